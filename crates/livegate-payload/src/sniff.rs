use crate::ImageFormat;

/// What [`sniff`] learnt from an image header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

/// Why [`sniff`] could not read an image header.
///
/// Never carries any of the bytes it looked at: they are biometric data.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    /// No known image signature.
    #[error("not a recognised image format")]
    Unrecognized,
    /// Known signature, but the data ends before the dimensions (e.g. a truncated upload).
    #[error("truncated {0} header")]
    Truncated(ImageFormat),
    /// Known signature, but the header is structurally invalid (bad marker or chunk, zero dimension).
    #[error("corrupt {0} header")]
    Corrupt(ImageFormat),
    /// A readable header, but the image after it is cut short or broken:
    /// the structural check ([`crate::check_structure`]) found no end marker,
    /// a bad chunk CRC or a size that disagrees with the data.
    #[error("{0} image data is truncated or corrupt")]
    Incomplete(ImageFormat),
}

/// Header fault before it is tagged with the format that was being parsed.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Truncated,
    Corrupt,
}

type Dims = Result<(u32, u32), Fault>;

const JPEG_SOI: &[u8] = &[0xFF, 0xD8, 0xFF];
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Identify the format by its signature and read width and height from the header only.
///
/// Looks at no more than the header (a JPEG may need to skip its metadata segments first),
/// allocates nothing, and returns an error rather than panicking or looping on any input.
pub fn sniff(bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    let (format, dims) = if bytes.starts_with(JPEG_SOI) {
        (ImageFormat::Jpeg, jpeg(bytes))
    } else if bytes.starts_with(PNG_SIGNATURE) {
        (ImageFormat::Png, png(bytes))
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        // Both tags are required: RIFF alone is also WAV and AVI.
        (ImageFormat::Webp, webp(bytes))
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        (ImageFormat::Gif, gif(bytes))
    } else {
        return Err(ImageError::Unrecognized);
    };
    match dims {
        Ok((width, height)) if width != 0 && height != 0 => Ok(ImageInfo {
            format,
            width,
            height,
        }),
        Ok(_) | Err(Fault::Corrupt) => Err(ImageError::Corrupt(format)),
        Err(Fault::Truncated) => Err(ImageError::Truncated(format)),
    }
}

/// `N` bytes at `at`, or `Truncated` if the data ends first.
fn take<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], Fault> {
    bytes
        .get(at..)
        .and_then(|rest| rest.first_chunk::<N>())
        .copied()
        .ok_or(Fault::Truncated)
}

fn be16(bytes: &[u8], at: usize) -> Result<u16, Fault> {
    take(bytes, at).map(u16::from_be_bytes)
}

fn le16(bytes: &[u8], at: usize) -> Result<u16, Fault> {
    take(bytes, at).map(u16::from_le_bytes)
}

fn le24(bytes: &[u8], at: usize) -> Result<u32, Fault> {
    take::<3>(bytes, at).map(|[a, b, c]| u32::from_le_bytes([a, b, c, 0]))
}

fn is_jpeg_sof(marker: u8) -> bool {
    // C4 (DHT), C8 (reserved for extensions) and CC (DAC) share the range but are not frames.
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

fn jpeg(bytes: &[u8]) -> Dims {
    // Dimensions live in the first SOFn segment, which encoders may put after
    // kilobytes of EXIF/ICC metadata, so walk the segment chain to it.
    // Just after SOI (FF D8): the first marker's 0xFF.
    let mut pos = 2;
    loop {
        if take::<1>(bytes, pos)? != [0xFF] {
            return Err(Fault::Corrupt);
        }
        // Any number of 0xFF fill bytes may precede a marker.
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let [marker] = take::<1>(bytes, pos)?;
        pos += 1;
        match marker {
            // TEM and RSTn stand alone, without a length.
            0x01 | 0xD0..=0xD7 => continue,
            // A stuffed zero, a second SOI, EOI, or scan data (SOS) before any frame header:
            // no well-formed file gets here.
            0x00 | 0xD8 | 0xD9 | 0xDA => return Err(Fault::Corrupt),
            _ => {}
        }
        let length = usize::from(be16(bytes, pos)?);
        if is_jpeg_sof(marker) {
            // length(2) precision(1) height(2) width(2) components(1)
            if length < 8 {
                return Err(Fault::Corrupt);
            }
            let height = be16(bytes, pos + 3)?;
            let width = be16(bytes, pos + 5)?;
            return Ok((u32::from(width), u32::from(height)));
        }
        // The length counts its own two bytes, so anything shorter would not advance.
        if length < 2 {
            return Err(Fault::Corrupt);
        }
        pos += length;
    }
}

fn png(bytes: &[u8]) -> Dims {
    // The spec requires IHDR to be the first chunk, always 13 bytes long.
    let at = PNG_SIGNATURE.len();
    let length = u32::from_be_bytes(take(bytes, at)?);
    let kind: [u8; 4] = take(bytes, at + 4)?;
    if length != 13 || &kind != b"IHDR" {
        return Err(Fault::Corrupt);
    }
    let width = u32::from_be_bytes(take(bytes, at + 8)?);
    let height = u32::from_be_bytes(take(bytes, at + 12)?);
    // PNG limits both to 2^31 - 1.
    if width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(Fault::Corrupt);
    }
    Ok((width, height))
}

fn webp(bytes: &[u8]) -> Dims {
    // RIFF header (12 bytes), then the first chunk's FourCC and size, then its payload.
    let kind: [u8; 4] = take(bytes, 12)?;
    let size = u32::from_le_bytes(take(bytes, 16)?);
    let payload = 20;
    match &kind {
        b"VP8 " => {
            // Lossy: 3-byte frame tag, then a key frame's start code and 14-bit sizes
            // (the top two bits are the upscaling mode).
            if size < 10 {
                return Err(Fault::Corrupt);
            }
            let [tag, _, _] = take(bytes, payload)?;
            if tag & 1 != 0 || take::<3>(bytes, payload + 3)? != [0x9D, 0x01, 0x2A] {
                return Err(Fault::Corrupt);
            }
            let width = le16(bytes, payload + 6)? & 0x3FFF;
            let height = le16(bytes, payload + 8)? & 0x3FFF;
            Ok((u32::from(width), u32::from(height)))
        }
        b"VP8L" => {
            // Lossless: signature byte, then width-1 and height-1 in 14 bits each and a
            // 3-bit version that must be zero.
            if size < 5 {
                return Err(Fault::Corrupt);
            }
            let [signature] = take(bytes, payload)?;
            let bits = u32::from_le_bytes(take(bytes, payload + 1)?);
            if signature != 0x2F || bits >> 29 != 0 {
                return Err(Fault::Corrupt);
            }
            Ok(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8X" => {
            // Extended: flags and reserved bytes, then the canvas size minus one in 24 bits each.
            if size < 10 {
                return Err(Fault::Corrupt);
            }
            let width = le24(bytes, payload + 4)? + 1;
            let height = le24(bytes, payload + 7)? + 1;
            Ok((width, height))
        }
        _ => Err(Fault::Corrupt),
    }
}

fn gif(bytes: &[u8]) -> Dims {
    let width = le16(bytes, 6)?;
    let height = le16(bytes, 8)?;
    Ok((u32::from(width), u32::from(height)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG: ImageFormat = ImageFormat::Jpeg;
    const PNG: ImageFormat = ImageFormat::Png;
    const WEBP: ImageFormat = ImageFormat::Webp;
    const GIF: ImageFormat = ImageFormat::Gif;

    fn info(format: ImageFormat, width: u32, height: u32) -> Result<ImageInfo, ImageError> {
        Ok(ImageInfo {
            format,
            width,
            height,
        })
    }

    /// A marker segment: FF, marker, big-endian length (counting itself), payload.
    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let length = u16::try_from(payload.len() + 2).unwrap();
        let mut out = vec![0xFF, marker];
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn sof(marker: u8, width: u16, height: u16) -> Vec<u8> {
        let [h0, h1] = height.to_be_bytes();
        let [w0, w1] = width.to_be_bytes();
        // 8-bit precision, 3 components with sampling factors and table ids.
        segment(
            marker,
            &[8, h0, h1, w0, w1, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1],
        )
    }

    fn sos() -> Vec<u8> {
        let mut out = segment(0xDA, &[3, 1, 0, 2, 0x11, 3, 0x11, 0, 0x3F, 0]);
        out.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56, 0xFF, 0xD9]);
        out
    }

    fn jpeg(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        for part in parts {
            out.extend_from_slice(part);
        }
        out
    }

    fn app0() -> Vec<u8> {
        segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0")
    }

    #[test]
    fn jpeg_minimal() {
        let bytes = jpeg(&[app0(), sof(0xC0, 320, 240), sos()]);
        assert_eq!(sniff(&bytes), info(JPEG, 320, 240));
    }

    #[test]
    fn jpeg_every_sof_marker_and_only_those() {
        for marker in 0xC0..=0xCF {
            let bytes = jpeg(&[app0(), sof(marker, 641, 479), sos()]);
            let expected = match marker {
                // DHT, JPG (reserved) and DAC are ordinary segments: the walk goes past
                // them and reaches SOS without having seen a frame header.
                0xC4 | 0xC8 | 0xCC => Err(ImageError::Corrupt(JPEG)),
                _ => info(JPEG, 641, 479),
            };
            assert_eq!(sniff(&bytes), expected, "marker {marker:#04x}");
        }
    }

    #[test]
    fn jpeg_dht_before_sof_is_not_a_frame() {
        // A DHT whose payload would read as 0x1111 x 0x1111 if it were taken for SOF.
        let dht = segment(0xC4, &[0x11; 40]);
        let bytes = jpeg(&[app0(), dht, sof(0xC2, 800, 600), sos()]);
        assert_eq!(sniff(&bytes), info(JPEG, 800, 600));
    }

    #[test]
    fn jpeg_large_app1_and_app2_before_sof() {
        // Maximal EXIF segment whose payload is full of things that look like markers.
        let mut exif = b"Exif\0\0".to_vec();
        while exif.len() < 65533 {
            exif.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x01, 0xFF, 0xDA]);
        }
        exif.truncate(65533);
        let app1 = segment(0xE1, &exif);
        let app2 = segment(0xE2, &[0xFF; 3000]);
        let bytes = jpeg(&[app0(), app1, app2, sof(0xC0, 1920, 1080), sos()]);
        assert_eq!(sniff(&bytes), info(JPEG, 1920, 1080));
        // Cut inside the big segment: the walk must report truncation, not read its payload.
        assert_eq!(sniff(&bytes[..40_000]), Err(ImageError::Truncated(JPEG)));
    }

    #[test]
    fn jpeg_fill_bytes_and_standalone_markers() {
        let mut sof_with_fill = vec![0xFF, 0xFF, 0xFF];
        sof_with_fill.extend_from_slice(&sof(0xC1, 300, 200));
        let standalone = vec![0xFF, 0xD0, 0xFF, 0xD7, 0xFF, 0x01];
        let bytes = jpeg(&[app0(), standalone, sof_with_fill, sos()]);
        assert_eq!(sniff(&bytes), info(JPEG, 300, 200));
    }

    #[test]
    fn jpeg_corrupt_structures() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("sos before sof", jpeg(&[app0(), sos()])),
            ("eoi before sof", jpeg(&[app0(), vec![0xFF, 0xD9]])),
            ("second soi", jpeg(&[vec![0xFF, 0xD8], sof(0xC0, 10, 10)])),
            ("stuffed zero", jpeg(&[vec![0xFF, 0x00], sof(0xC0, 10, 10)])),
            (
                "length 0",
                jpeg(&[vec![0xFF, 0xE0, 0x00, 0x00], sof(0xC0, 10, 10)]),
            ),
            (
                "length 1",
                jpeg(&[vec![0xFF, 0xE0, 0x00, 0x01], sof(0xC0, 10, 10)]),
            ),
            ("sof length 7", jpeg(&[segment(0xC0, &[8, 0, 10, 0, 10])])),
            (
                "no marker byte",
                jpeg(&[app0(), vec![0x00, 0xC0], sof(0xC0, 10, 10)]),
            ),
            ("zero width", jpeg(&[sof(0xC0, 0, 240), sos()])),
            ("zero height", jpeg(&[sof(0xC0, 320, 0), sos()])),
        ];
        for (name, bytes) in cases {
            assert_eq!(sniff(&bytes), Err(ImageError::Corrupt(JPEG)), "{name}");
        }
    }

    #[test]
    fn jpeg_truncated() {
        let full = jpeg(&[app0(), sof(0xC0, 320, 240), sos()]);
        let sof_at = 2 + app0().len();
        for cut in [3, 4, 5, sof_at, sof_at + 1, sof_at + 3, sof_at + 8] {
            assert_eq!(
                sniff(&full[..cut]),
                Err(ImageError::Truncated(JPEG)),
                "cut at {cut}"
            );
        }
        // Fill bytes running to the end of the data.
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xFF, 0xFF]),
            Err(ImageError::Truncated(JPEG))
        );
    }

    fn png(first_chunk: &[u8], length: u32, width: u32, height: u32) -> Vec<u8> {
        let mut out = PNG_SIGNATURE.to_vec();
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(first_chunk);
        out.extend_from_slice(&width.to_be_bytes());
        out.extend_from_slice(&height.to_be_bytes());
        out.extend_from_slice(&[8, 2, 0, 0, 0, 0xAA, 0xBB, 0xCC, 0xDD]);
        out
    }

    #[test]
    fn png_ihdr() {
        assert_eq!(sniff(&png(b"IHDR", 13, 1, 1)), info(PNG, 1, 1));
        assert_eq!(sniff(&png(b"IHDR", 13, 9000, 200)), info(PNG, 9000, 200));
        let max = i32::MAX as u32;
        assert_eq!(sniff(&png(b"IHDR", 13, max, max)), info(PNG, max, max));
    }

    #[test]
    fn png_corrupt_and_truncated() {
        let corrupt = Err(ImageError::Corrupt(PNG));
        assert_eq!(sniff(&png(b"IDAT", 13, 10, 10)), corrupt);
        assert_eq!(sniff(&png(b"ihdr", 13, 10, 10)), corrupt);
        assert_eq!(sniff(&png(b"IHDR", 12, 10, 10)), corrupt);
        assert_eq!(sniff(&png(b"IHDR", 13, 0, 10)), corrupt);
        assert_eq!(sniff(&png(b"IHDR", 13, 10, 0)), corrupt);
        assert_eq!(sniff(&png(b"IHDR", 13, 1 << 31, 10)), corrupt);
        assert_eq!(sniff(&png(b"IHDR", 13, 10, u32::MAX)), corrupt);
        let full = png(b"IHDR", 13, 10, 10);
        for cut in 8..24 {
            assert_eq!(sniff(&full[..cut]), Err(ImageError::Truncated(PNG)));
        }
    }

    fn riff(chunk: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&u32::try_from(payload.len() + 12).unwrap().to_le_bytes());
        out.extend_from_slice(b"WEBP");
        out.extend_from_slice(chunk);
        out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn vp8(tag: u8, start: [u8; 3], width: u16, height: u16) -> Vec<u8> {
        let mut payload = vec![tag, 0x12, 0x34];
        payload.extend_from_slice(&start);
        payload.extend_from_slice(&width.to_le_bytes());
        payload.extend_from_slice(&height.to_le_bytes());
        payload.extend_from_slice(&[0; 8]);
        riff(b"VP8 ", &payload)
    }

    fn vp8l(signature: u8, bits: u32) -> Vec<u8> {
        let mut payload = vec![signature];
        payload.extend_from_slice(&bits.to_le_bytes());
        payload.extend_from_slice(&[0; 8]);
        riff(b"VP8L", &payload)
    }

    fn vp8x(width_minus_one: u32, height_minus_one: u32) -> Vec<u8> {
        let mut payload = vec![0x10, 0, 0, 0];
        payload.extend_from_slice(&width_minus_one.to_le_bytes()[..3]);
        payload.extend_from_slice(&height_minus_one.to_le_bytes()[..3]);
        riff(b"VP8X", &payload)
    }

    const START: [u8; 3] = [0x9D, 0x01, 0x2A];

    #[test]
    fn webp_lossy() {
        assert_eq!(sniff(&vp8(0x50, START, 320, 240)), info(WEBP, 320, 240));
        // The top two bits of each size are the upscaling mode, not part of the size.
        assert_eq!(
            sniff(&vp8(0x50, START, 0xC000 | 320, 0x4000 | 0x3FFF)),
            info(WEBP, 320, 0x3FFF)
        );
    }

    #[test]
    fn webp_lossy_corrupt() {
        let corrupt = Err(ImageError::Corrupt(WEBP));
        assert_eq!(sniff(&vp8(0x50, [0x9D, 0x01, 0x2B], 320, 240)), corrupt);
        // Bit 0 of the frame tag set: an interframe, which has no start code or sizes.
        assert_eq!(sniff(&vp8(0x51, START, 320, 240)), corrupt);
        assert_eq!(sniff(&vp8(0x50, START, 0xC000, 240)), corrupt);
        assert_eq!(sniff(&vp8(0x50, START, 320, 0)), corrupt);
        let mut short_chunk = vp8(0x50, START, 320, 240);
        short_chunk[16..20].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(sniff(&short_chunk), corrupt);
    }

    #[test]
    fn webp_lossless() {
        let bits = |w: u32, h: u32| (w - 1) | ((h - 1) << 14);
        assert_eq!(sniff(&vp8l(0x2F, bits(320, 240))), info(WEBP, 320, 240));
        assert_eq!(sniff(&vp8l(0x2F, bits(1, 1))), info(WEBP, 1, 1));
        assert_eq!(
            sniff(&vp8l(0x2F, bits(16384, 16384) | (1 << 28))),
            info(WEBP, 16384, 16384)
        );
        let corrupt = Err(ImageError::Corrupt(WEBP));
        assert_eq!(sniff(&vp8l(0x2E, bits(320, 240))), corrupt);
        assert_eq!(sniff(&vp8l(0x2F, bits(320, 240) | (1 << 29))), corrupt);
    }

    #[test]
    fn webp_extended() {
        assert_eq!(sniff(&vp8x(319, 239)), info(WEBP, 320, 240));
        assert_eq!(sniff(&vp8x(0xFF_FFFF, 0)), info(WEBP, 1 << 24, 1));
    }

    #[test]
    fn webp_other_chunks_and_truncation() {
        assert_eq!(
            sniff(&riff(b"ALPH", &[0; 16])),
            Err(ImageError::Corrupt(WEBP))
        );
        let full = vp8(0x50, START, 320, 240);
        for cut in 12..30 {
            assert_eq!(sniff(&full[..cut]), Err(ImageError::Truncated(WEBP)));
        }
        let full = vp8l(0x2F, 0);
        for cut in 12..25 {
            assert_eq!(sniff(&full[..cut]), Err(ImageError::Truncated(WEBP)));
        }
        let full = vp8x(0, 0);
        for cut in 12..30 {
            assert_eq!(sniff(&full[..cut]), Err(ImageError::Truncated(WEBP)));
        }
    }

    #[test]
    fn riff_that_is_not_webp() {
        let mut wave = riff(b"fmt ", &[0; 16]);
        wave[8..12].copy_from_slice(b"WAVE");
        assert_eq!(sniff(&wave), Err(ImageError::Unrecognized));
    }

    #[test]
    fn gif_both_versions() {
        for signature in [b"GIF87a", b"GIF89a"] {
            let mut bytes = signature.to_vec();
            bytes.extend_from_slice(&[0x00, 0x01, 0x80, 0x00, 0xF7, 0, 0]);
            assert_eq!(sniff(&bytes), info(GIF, 256, 128));
            assert_eq!(sniff(&bytes[..9]), Err(ImageError::Truncated(GIF)));
            bytes[6..8].fill(0);
            assert_eq!(sniff(&bytes), Err(ImageError::Corrupt(GIF)));
        }
        assert_eq!(
            sniff(b"GIF88a\x00\x01\x00\x01"),
            Err(ImageError::Unrecognized)
        );
    }

    #[test]
    fn unrecognized() {
        for bytes in [
            &b""[..],
            b"\xFF",
            b"\xFF\xD8",
            b"\xFF\xD8\x00\xE0",
            b"\x89PNG\r\n\x1a",
            b"%PDF-1.4",
            b"BM\x00\x00",
            b"RIFF\x00\x00\x00\x00WEB",
        ] {
            assert_eq!(sniff(bytes), Err(ImageError::Unrecognized));
        }
    }

    #[test]
    fn error_messages_are_lowercase() {
        for err in [
            ImageError::Unrecognized,
            ImageError::Truncated(JPEG),
            ImageError::Corrupt(WEBP),
        ] {
            let msg = err.to_string();
            assert_eq!(msg, msg.to_lowercase());
        }
        assert_eq!(
            ImageError::Truncated(JPEG).to_string(),
            "truncated jpeg header"
        );
    }
}
