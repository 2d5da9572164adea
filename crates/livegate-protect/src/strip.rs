//! Lossless metadata removal: what a phone or an editor wrote around a face
//! image (location, device serial numbers, names, dates, thumbnails) is taken
//! out before the image leaves for the vendor.
//!
//! Only whole JPEG segments, PNG chunks and WebP chunks are dropped: the
//! compressed picture is copied byte for byte, so the output decodes to
//! exactly the pixels of the input and nothing is re-encoded.
//!
//! | format | removed | kept |
//! |--------|---------|------|
//! | JPEG | APP1 (EXIF, XMP, extended XMP, anything else), APP13 (Photoshop/IPTC), COM, APP3–APP12, APP15 (camera and vendor data), anything after the end of the image | APP0 (JFIF/JFXX), APP2 (ICC profile, MPF), APP14 (Adobe: selects the colour transform), every table, frame and scan |
//! | PNG | `tEXt`, `zTXt`, `iTXt`, `tIME`, `eXIf`, unknown ancillary chunks, anything after `IEND` | critical chunks (`IHDR`, `PLTE`, `IDAT`, `IEND`), `tRNS`, colour (`gAMA`, `cHRM`, `sRGB`, `iCCP`, `sBIT`, `cICP`, `mDCV`, `cLLI`), `bKGD`, `hIST`, `sPLT`, `pHYs`, `oFFs`, `pCAL`, `sCAL`, `sTER`, APNG (`acTL`, `fcTL`, `fdAT`) |
//! | WebP | `EXIF`, `XMP `, unknown chunks, anything after the RIFF chunk | `VP8X` (its EXIF and XMP flags cleared), `ICCP`, `ANIM`, `ANMF`, `ALPH`, `VP8 `, `VP8L` |
//!
//! Unknown chunks are dropped rather than kept: a reader may ignore them, so
//! the picture does not need them, and they are where vendors put private
//! data. Each one counts in [`Removed::other`].
//!
//! Data after the end of the image is dropped too: phones append the other
//! images of an MPF file there (a depth map, a preview, each with its own
//! EXIF) and motion-photo videos, and it is the classic place to hide a
//! second file. A JPEG's MPF segment, which indexes those images, goes with
//! them. JPEG segments found between the scans of a progressive image are
//! judged like those before the first scan.
//!
//! # Orientation
//!
//! A portrait photo from a phone is usually stored sideways with EXIF
//! Orientation 6 ("rotate 90° clockwise to display"); without it the vendor
//! would see a face lying on its side. So when the removed EXIF had an
//! orientation other than 1, a minimal EXIF is written back in its place
//! holding nothing but that tag: a 26-byte big-endian TIFF structure with
//! IFD0 made of one SHORT entry `0x0112` and no next IFD. No GPS, serial
//! number, date or thumbnail survives. Only the first EXIF counts (for JPEG,
//! the first before the scans), as in decoders, and an EXIF that already is
//! exactly this minimal one is kept, so stripping twice copies once.
//!
//! The same is done for PNG `eXIf` and WebP `EXIF` (and the WebP `VP8X` EXIF
//! flag stays set for it), so an image means the same in every format:
//! readers that honour the tag there show the face upright, the many that
//! ignore it lose nothing. [`Removed::exif`] reports the removal all the same.
//!
//! # Cost
//!
//! Detecting what to remove is one scan: through the JPEG segments and the
//! entropy-coded data (looking for the end of the image, eight bytes at a
//! time), through the PNG chunks (whose CRCs are checked), or through the
//! RIFF chunks. An image with nothing to remove is not copied
//! ([`Stripped::image`] is `None`). Otherwise the output is written once,
//! into one buffer of the output's exact size, which references nothing of
//! the input.
//!
//! # Errors
//!
//! A container whose structure cannot be followed (a segment or chunk longer
//! than the data, a JPEG without a scan, a wrong PNG CRC) is refused with
//! [`StripError::Malformed`], and the caller decides what to do with the
//! image. Data cut short inside the compressed picture is not an error here:
//! it is kept as it is. No input makes this module panic, and neither its
//! errors nor its `Debug` output contain image bytes.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use image::metadata::Orientation;
use img_parts::png::{Png, PngChunk};
use img_parts::riff::{RiffChunk, RiffContent};
use img_parts::webp::WebP;

/// What was taken out of an image: kinds only, never the content.
///
/// Invariant: [`Stripped::image`] is `Some` exactly when [`Removed::any`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// EXIF: JPEG APP1 `Exif`, PNG `eXIf`, WebP `EXIF` (also when a minimal
    /// EXIF with the orientation alone was written back).
    pub exif: bool,
    /// XMP: JPEG APP1 (standard and extended), PNG `iTXt` with the XMP
    /// keyword, WebP `XMP `.
    pub xmp: bool,
    /// IPTC: JPEG APP13 (Photoshop image resources).
    pub iptc: bool,
    /// JPEG COM.
    pub comment: bool,
    /// PNG `tEXt`, `zTXt`, `iTXt` (other than XMP) and `tIME`.
    pub text: bool,
    /// Other dropped segments and chunks (JPEG APP3–APP12, APP15, APP1
    /// holding neither EXIF nor XMP, MPF with its images; unknown PNG and
    /// WebP chunks), plus one for data after the end of the image.
    pub other: u16,
}

impl Removed {
    /// The names [`Removed::kinds`] uses, in its order.
    pub const KINDS: [&'static str; 6] = ["exif", "xmp", "iptc", "comment", "text", "other"];

    /// Anything at all was removed.
    pub fn any(&self) -> bool {
        self.exif || self.xmp || self.iptc || self.comment || self.text || self.other > 0
    }

    /// The kinds removed, e.g. `["exif", "xmp", "comment"]`, in the fixed
    /// order of [`Removed::KINDS`], for the audit record.
    pub fn kinds(&self) -> Vec<&'static str> {
        let flags = [
            self.exif,
            self.xmp,
            self.iptc,
            self.comment,
            self.text,
            self.other > 0,
        ];
        Self::KINDS
            .iter()
            .zip(flags)
            .filter_map(|(&kind, removed)| removed.then_some(kind))
            .collect()
    }

    fn add_other(&mut self) {
        self.other = self.other.saturating_add(1);
    }
}

/// The result of [`strip_metadata`].
#[derive(Clone, PartialEq, Eq)]
pub struct Stripped {
    /// `None`: nothing to remove, forward the original bytes as they are.
    /// `Some`: the image without its metadata, to forward instead.
    pub image: Option<Bytes>,
    pub removed: Removed,
}

impl Stripped {
    fn unchanged() -> Stripped {
        Stripped {
            image: None,
            removed: Removed::default(),
        }
    }
}

impl fmt::Debug for Stripped {
    // The size only: the content is a face image.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stripped")
            .field(
                "image",
                &self.image.as_ref().map(|image| Redacted(image.len())),
            )
            .field("removed", &self.removed)
            .finish()
    }
}

struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0)
    }
}

/// Why an image's metadata could not be removed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StripError {
    /// A segment or chunk runs past the end of the data or has an impossible
    /// length, a PNG CRC is wrong, or a JPEG ends before its first scan.
    #[error("the image's container structure is malformed")]
    Malformed,
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Removes the metadata of a JPEG, PNG or WebP image, detected by its
/// signature; anything else (e.g. GIF) is `Ok` with `image: None`.
///
/// See the [module documentation](self) for what is removed and kept.
pub fn strip_metadata(image: &Bytes) -> Result<Stripped, StripError> {
    if image.starts_with(&[0xFF, 0xD8, 0xFF]) {
        strip_jpeg(image)
    } else if image.starts_with(PNG_SIGNATURE) {
        strip_png(image)
    } else if image.len() >= 12 && image.starts_with(b"RIFF") && &image[8..12] == b"WEBP" {
        strip_webp(image)
    } else {
        Ok(Stripped::unchanged())
    }
}

// ---------------------------------------------------------------------------
// Orientation

/// Length of the minimal TIFF structure written back for the orientation.
const ORIENTATION_TIFF_LEN: usize = 26;

/// A minimal EXIF (TIFF) structure: big-endian header, IFD0 with a single
/// Orientation entry (tag 0x0112, SHORT, count 1), no next IFD.
fn orientation_tiff(orientation: u8) -> [u8; ORIENTATION_TIFF_LEN] {
    let mut tiff = [0; ORIENTATION_TIFF_LEN];
    tiff[..4].copy_from_slice(b"MM\0*");
    tiff[4..8].copy_from_slice(&8u32.to_be_bytes()); // IFD0 right after the header
    tiff[8..10].copy_from_slice(&1u16.to_be_bytes()); // one entry
    tiff[10..12].copy_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff[12..14].copy_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff[14..18].copy_from_slice(&1u32.to_be_bytes()); // count
    tiff[18..20].copy_from_slice(&u16::from(orientation).to_be_bytes()); // value, padded
    // tiff[22..26]: next IFD offset 0, none
    tiff
}

/// The orientation recorded in an EXIF payload (TIFF structure, with or
/// without the `Exif\0\0` prefix), when it is a valid value other than 1.
fn rotated(exif: &[u8]) -> Option<u8> {
    let tiff = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
    Orientation::from_exif_chunk(tiff)
        .map(Orientation::to_exif)
        .filter(|&orientation| orientation != 1)
}

/// The EXIF payload is exactly the minimal one written back here, so an image
/// stripped before (by this gateway or a client) is not copied again.
fn is_minimal(exif: &[u8]) -> bool {
    rotated(exif).is_some_and(|orientation| exif == orientation_tiff(orientation))
}

// ---------------------------------------------------------------------------
// JPEG

const JPEG_EXIF_PREFIX: &[u8] = b"Exif\0";
const XMP_PREFIX: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const XMP_EXTENSION_PREFIX: &[u8] = b"http://ns.adobe.com/xmp/extension/\0";
const MPF_PREFIX: &[u8] = b"MPF\0";

const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const APP1: u8 = 0xE1;
const APP2: u8 = 0xE2;
const APP13: u8 = 0xED;
const COM: u8 = 0xFE;

/// The APP1 segment written back for an orientation other than 1.
const ORIENTATION_APP1_LEN: usize = 4 + 6 + ORIENTATION_TIFF_LEN;

fn orientation_app1(orientation: u8) -> [u8; ORIENTATION_APP1_LEN] {
    let mut segment = [0; ORIENTATION_APP1_LEN];
    segment[..2].copy_from_slice(&[0xFF, APP1]);
    // The length counts itself, not the marker: fits in a u16 by construction.
    segment[2..4].copy_from_slice(&((ORIENTATION_APP1_LEN - 2) as u16).to_be_bytes());
    segment[4..10].copy_from_slice(b"Exif\0\0");
    segment[10..].copy_from_slice(&orientation_tiff(orientation));
    segment
}

/// A range of the input left out of the output, perhaps replaced.
struct Cut {
    range: Range<usize>,
    replacement: Option<[u8; ORIENTATION_APP1_LEN]>,
}

/// Why a JPEG segment is dropped.
enum Dropped {
    Exif,
    Xmp,
    Iptc,
    Comment,
    Other,
}

impl Dropped {
    fn record(self, removed: &mut Removed) {
        match self {
            Dropped::Exif => removed.exif = true,
            Dropped::Xmp => removed.xmp = true,
            Dropped::Iptc => removed.iptc = true,
            Dropped::Comment => removed.comment = true,
            Dropped::Other => removed.add_other(),
        }
    }
}

fn dropped(marker: u8, contents: &[u8]) -> Option<Dropped> {
    match marker {
        APP1 if contents.starts_with(JPEG_EXIF_PREFIX) => Some(Dropped::Exif),
        APP1 if contents.starts_with(XMP_PREFIX) || contents.starts_with(XMP_EXTENSION_PREFIX) => {
            Some(Dropped::Xmp)
        }
        APP13 => Some(Dropped::Iptc),
        COM => Some(Dropped::Comment),
        APP1 | 0xE3..=0xEC | 0xEF => Some(Dropped::Other),
        _ => None,
    }
}

fn strip_jpeg(image: &Bytes) -> Result<Stripped, StripError> {
    let (cuts, removed) = plan_jpeg(image)?;
    if cuts.is_empty() {
        return Ok(Stripped::unchanged());
    }
    Ok(Stripped {
        image: Some(splice(image, &cuts)),
        removed,
    })
}

/// Walks the JPEG from its SOI to its EOI, through every segment and scan,
/// and lists the ranges to cut, in order.
fn plan_jpeg(b: &[u8]) -> Result<(Vec<Cut>, Removed), StripError> {
    let mut cuts = Vec::new();
    let mut removed = Removed::default();
    let mut mpf = Vec::new();
    let mut exif_seen = false;
    let mut scan_seen = false;
    let mut end = None;

    let mut pos = 2; // after SOI
    // Bytes that are not a marker (which libjpeg skips with a warning) are
    // kept as they are.
    while let Some(ff) = b.get(pos..).and_then(find_ff) {
        let mut at = pos + ff + 1;
        while b.get(at) == Some(&0xFF) {
            at += 1; // fill bytes
        }
        let Some(&marker) = b.get(at) else { break };
        let start = at - 1;
        match marker {
            EOI => {
                end = Some(at + 1);
                break;
            }
            // Markers with a length: frames, tables, scans, APPn, JPGn, COM.
            0xC0..=0xCF | 0xDA..=0xFE => {}
            // SOI, RSTn, TEM, reserved and stray bytes: no length, kept.
            _ => {
                pos = at + 1;
                continue;
            }
        }

        let segment_end = b
            .get(at + 1..at + 3)
            .map(|len| usize::from(u16::from_be_bytes([len[0], len[1]])))
            .filter(|&len| len >= 2)
            .map(|len| at + 1 + len)
            .filter(|&end| end <= b.len());
        let Some(segment_end) = segment_end else {
            // Cut short inside the picture is kept as it is; before it, the
            // image has no picture to keep.
            if scan_seen {
                break;
            }
            return Err(StripError::Malformed);
        };
        let range = start..segment_end;
        let contents = &b[at + 3..segment_end];
        if marker == APP2 && contents.starts_with(MPF_PREFIX) {
            mpf.push(range.clone());
        }
        if let Some(kind) = dropped(marker, contents) {
            let is_exif = matches!(kind, Dropped::Exif);
            let first_exif = is_exif && !exif_seen && !scan_seen;
            exif_seen |= is_exif;
            let tiff = contents.strip_prefix(b"Exif\0\0").unwrap_or_default();
            if !(first_exif && is_minimal(tiff)) {
                kind.record(&mut removed);
                let replacement = if first_exif {
                    rotated(contents).map(orientation_app1)
                } else {
                    None
                };
                cuts.push(Cut { range, replacement });
            }
        }

        pos = segment_end;
        if marker == SOS {
            scan_seen = true;
            pos = skip_entropy(b, pos);
        }
    }

    if !scan_seen {
        return Err(StripError::Malformed);
    }
    if let Some(end) = end.filter(|&end| end < b.len()) {
        // Other images (indexed by the MPF segment), videos, other files.
        removed.add_other();
        cuts.push(Cut {
            range: end..b.len(),
            replacement: None,
        });
        for range in mpf {
            removed.add_other();
            cuts.push(Cut {
                range,
                replacement: None,
            });
        }
        cuts.sort_unstable_by_key(|cut| cut.range.start);
    }
    Ok((cuts, removed))
}

/// The position of the marker that ends the entropy-coded data starting at
/// `from` (the 0xFF before it), or the end of the data. Stuffed bytes (FF 00)
/// and restart markers belong to the data.
fn skip_entropy(b: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(ff) = b.get(i..).and_then(find_ff) {
        let ff = i + ff;
        match b.get(ff + 1) {
            None => break,
            Some(0x00 | 0xD0..=0xD7) => i = ff + 2,
            Some(0xFF) => i = ff + 1,
            Some(_) => return ff,
        }
    }
    b.len()
}

/// The position of the first 0xFF byte, eight bytes at a time.
fn find_ff(b: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut chunks = b.chunks_exact(8);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        // A byte of the complement is zero exactly where a byte is 0xFF.
        let inverted = !u64::from_ne_bytes(word);
        if inverted.wrapping_sub(ONES) & !inverted & HIGHS != 0 {
            let at = chunk.iter().position(|&byte| byte == 0xFF)?;
            return Some(8 * i + at);
        }
    }
    let rest = chunks.remainder();
    let at = rest.iter().position(|&byte| byte == 0xFF)?;
    Some(b.len() - rest.len() + at)
}

/// The input without the cut ranges (and with their replacements), written
/// into one buffer of the exact size.
fn splice(image: &[u8], cuts: &[Cut]) -> Bytes {
    let len = cuts.iter().fold(image.len(), |len, cut| {
        len - cut.range.len() + cut.replacement.map_or(0, |r| r.len())
    });
    let mut out = Vec::with_capacity(len);
    let mut pos = 0;
    for cut in cuts {
        out.extend_from_slice(&image[pos..cut.range.start]);
        if let Some(replacement) = &cut.replacement {
            out.extend_from_slice(replacement);
        }
        pos = cut.range.end;
    }
    out.extend_from_slice(&image[pos..]);
    Bytes::from(out)
}

// ---------------------------------------------------------------------------
// PNG

const PNG_EXIF: [u8; 4] = *b"eXIf";
const PNG_XMP_KEYWORD: &[u8] = b"XML:com.adobe.xmp\0";

/// Ancillary chunks that take part in showing the picture.
const PNG_KEPT: [&[u8; 4]; 22] = [
    b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"cICP", b"mDCV", b"mDCv", b"cLLI",
    b"cLLi", b"bKGD", b"hIST", b"sPLT", b"pHYs", b"oFFs", b"pCAL", b"sCAL", b"sTER", b"acTL",
    b"fcTL", b"fdAT",
];

fn strip_png(image: &Bytes) -> Result<Stripped, StripError> {
    let mut png = Png::from_bytes(image.clone()).map_err(|_| StripError::Malformed)?;
    let mut removed = Removed::default();
    if png.len() < image.len() {
        removed.add_other(); // after IEND
    }

    let mut kept = 0;
    let mut exif_seen = false;
    let mut orientation = None;
    png.chunks_mut().retain(|chunk| {
        let kind = chunk.kind();
        // Critical chunks (an upper-case first letter) are all kept.
        let keep = if kind[0].is_ascii_uppercase() || PNG_KEPT.contains(&&kind) {
            true
        } else if kind == PNG_EXIF {
            let first = !exif_seen;
            exif_seen = true;
            if first && is_minimal(chunk.contents()) {
                true
            } else {
                removed.exif = true;
                if first {
                    orientation = rotated(chunk.contents()).map(|o| (kept, o));
                }
                false
            }
        } else if &kind == b"iTXt" && chunk.contents().starts_with(PNG_XMP_KEYWORD) {
            removed.xmp = true;
            false
        } else if matches!(&kind, b"tEXt" | b"zTXt" | b"iTXt" | b"tIME") {
            removed.text = true;
            false
        } else {
            removed.add_other();
            false
        };
        kept += usize::from(keep);
        keep
    });
    if !removed.any() {
        return Ok(Stripped::unchanged());
    }
    if let Some((at, orientation)) = orientation {
        let exif = Bytes::copy_from_slice(&orientation_tiff(orientation));
        png.chunks_mut().insert(at, PngChunk::new(PNG_EXIF, exif));
    }
    Ok(Stripped {
        image: Some(png.encoder().bytes()),
        removed,
    })
}

// ---------------------------------------------------------------------------
// WebP

const WEBP_EXIF: [u8; 4] = *b"EXIF";
const WEBP_XMP: [u8; 4] = *b"XMP ";
const WEBP_VP8X: [u8; 4] = *b"VP8X";
const WEBP_KEPT: [&[u8; 4]; 7] = [
    b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF", b"ICCP",
];
/// `VP8X` flags (first byte of its data).
const VP8X_EXIF: u8 = 0x08;
const VP8X_XMP: u8 = 0x04;

fn strip_webp(image: &Bytes) -> Result<Stripped, StripError> {
    let mut webp = WebP::from_bytes(image.clone()).map_err(|_| StripError::Malformed)?;
    let mut removed = Removed::default();
    if (webp.len() as usize) < image.len() {
        removed.add_other(); // after the RIFF chunk
    }

    let mut kept = 0;
    let mut exif_seen = false;
    let mut orientation = None;
    webp.chunks_mut().retain(|chunk| {
        let id = chunk.id();
        let keep = if WEBP_KEPT.contains(&&id) {
            true
        } else if id == WEBP_EXIF {
            let first = !exif_seen;
            exif_seen = true;
            let data = chunk.content().data().map_or(&[][..], |data| &data[..]);
            if first && is_minimal(data) {
                true
            } else {
                removed.exif = true;
                if first {
                    orientation = rotated(data).map(|o| (kept, o));
                }
                false
            }
        } else if id == WEBP_XMP {
            removed.xmp = true;
            false
        } else {
            removed.add_other();
            false
        };
        kept += usize::from(keep);
        keep
    });
    if !removed.any() {
        return Ok(Stripped::unchanged());
    }

    let chunks = webp.chunks_mut();
    if let Some((at, orientation)) = orientation {
        let exif = Bytes::copy_from_slice(&orientation_tiff(orientation));
        chunks.insert(at, RiffChunk::new(WEBP_EXIF, RiffContent::Data(exif)));
    }
    // The flags say which chunks follow; only EXIF and XMP may have changed.
    // Only the minimal EXIF may be left, never XMP.
    let exif = chunks.iter().any(|chunk| chunk.id() == WEBP_EXIF);
    let vp8x = chunks.iter_mut().find(|chunk| chunk.id() == WEBP_VP8X);
    if let Some(RiffContent::Data(data)) = vp8x.map(RiffChunk::content_mut) {
        if let Some(&flags) = data.first() {
            let mut updated = data.to_vec();
            updated[0] = flags & !(VP8X_EXIF | VP8X_XMP) | if exif { VP8X_EXIF } else { 0 };
            *data = Bytes::from(updated);
        }
    }
    Ok(Stripped {
        image: Some(webp.encoder().bytes()),
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_ff_agrees_with_a_plain_search() {
        for len in 0..40 {
            for at in 0..=len {
                let mut b = vec![0xFEu8; len];
                if at < len {
                    b[at] = 0xFF;
                }
                let expected = b.iter().position(|&x| x == 0xFF);
                assert_eq!(find_ff(&b), expected, "len {len}, 0xFF at {at}");
            }
        }
        // 0x7F and 0x80 next to each other must not look like 0xFF.
        assert_eq!(
            find_ff(&[0x7F, 0x80, 0x7F, 0x80, 0x7F, 0x80, 0x7F, 0x80, 0xFF]),
            Some(8)
        );
    }

    #[test]
    fn orientation_tiff_is_read_back() {
        for value in 1..=8 {
            let tiff = orientation_tiff(value);
            let read = Orientation::from_exif_chunk(&tiff).map(Orientation::to_exif);
            assert_eq!(read, Some(value));
        }
        assert_eq!(rotated(&orientation_tiff(1)), None);
        assert_eq!(rotated(&orientation_tiff(6)), Some(6));
        let app1 = orientation_app1(6);
        assert_eq!(
            usize::from(u16::from_be_bytes([app1[2], app1[3]])),
            app1.len() - 2
        );
        assert_eq!(rotated(&app1[4..]), Some(6));
    }

    #[test]
    fn entropy_ends_at_the_first_real_marker() {
        // stuffed FF 00, RST3, fill FF FF, then EOI
        let b = [1, 0xFF, 0x00, 2, 0xFF, 0xD3, 3, 0xFF, 0xFF, 0xD9, 4];
        assert_eq!(skip_entropy(&b, 0), 8);
        assert_eq!(skip_entropy(&b[..7], 0), 7);
        assert_eq!(skip_entropy(&[0xFF], 0), 1);
    }

    #[test]
    fn a_jpeg_with_trailing_data_loses_it_and_its_mpf_index() {
        let segment = |marker: u8, contents: &[u8]| {
            let mut s = vec![0xFF, marker];
            s.extend_from_slice(&(contents.len() as u16 + 2).to_be_bytes());
            s.extend_from_slice(contents);
            s
        };
        let head = [&[0xFF, 0xD8][..], &segment(0xE0, b"JFIF\0")].concat();
        let mpf = segment(APP2, b"MPF\0II*\0");
        let tail = [
            &segment(0xDB, &[0; 3])[..],
            &segment(SOS, &[0; 3]),
            &[9, 0xFF, 0x00, 9, 0xFF, 0xD9],
        ]
        .concat();
        let primary = [&head[..], &mpf, &tail].concat();
        let file = [&primary[..], b"\xFF\xD8 a second image, with its own EXIF"].concat();

        let stripped = strip_metadata(&Bytes::from(file)).unwrap();
        assert_eq!(stripped.removed.other, 2);
        let expected = [head, tail].concat();
        assert_eq!(stripped.image.as_deref(), Some(&expected[..]));

        // Without trailing data the MPF segment stays.
        let stripped = strip_metadata(&Bytes::from(primary)).unwrap();
        assert_eq!(stripped, Stripped::unchanged());
    }

    #[test]
    fn removed_kinds_in_order() {
        assert!(!Removed::default().any());
        assert!(Removed::default().kinds().is_empty());
        let removed = Removed {
            comment: true,
            exif: true,
            other: 3,
            ..Removed::default()
        };
        assert!(removed.any());
        assert_eq!(removed.kinds(), ["exif", "comment", "other"]);
        let all = Removed {
            exif: true,
            xmp: true,
            iptc: true,
            comment: true,
            text: true,
            other: 1,
        };
        assert_eq!(all.kinds(), Removed::KINDS);
    }

    #[test]
    fn debug_output_holds_no_image_bytes() {
        let stripped = Stripped {
            image: Some(Bytes::from_static(b"\xFF\xD8secret")),
            removed: Removed::default(),
        };
        let debug = format!("{stripped:?}");
        assert!(debug.contains("<8 bytes redacted>"), "{debug}");
        assert!(
            !debug.contains("secret") && !debug.contains("255"),
            "{debug}"
        );
    }
}
