use std::fmt;

use base64_simd::{Out, STANDARD};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::normalize::{may_be_canonical, normalize_into};
use crate::{
    ImageError, ImageInfo, ImagePolicy, NormalizeError, PolicyError, StructureCheck, sniff,
};

/// The start and end of the vendor's body around the canonical base64, which
/// needs no JSON escaping.
pub const VENDOR_BODY_HEAD: &[u8] = b"{\"faceImage\":\"";
pub const VENDOR_BODY_TAIL: &[u8] = b"\"}";

/// An image that passed normalization, sniffing and the policy: ready to forward.
///
/// Holds the facts about the image, never the decoded image: it is decoded in
/// small chunks that are hashed and sniffed and then overwritten, so a 10 MiB
/// upload never costs a second 7.5 MiB buffer.
#[derive(Clone, PartialEq, Eq)]
pub struct Prepared {
    /// `None`: the client's base64 was canonical, forward it as it is.
    /// `Some(body)`: the complete vendor body `{"faceImage":"<canonical>"}`,
    /// written once, into this buffer.
    pub vendor_body: Option<Vec<u8>>,
    pub info: ImageInfo,
    /// Decoded image size in bytes.
    pub size: usize,
    /// SHA-256 of the decoded image bytes.
    pub sha256: [u8; 32],
    /// The decoded image, only when the caller asked to keep it (for
    /// liveness-aware protection: metadata removal and the perceptual hash).
    pub decoded: Option<Bytes>,
}

impl fmt::Debug for Prepared {
    // Sizes only: the content is a face image.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field(
                "vendor_body",
                &self.vendor_body.as_ref().map(|b| Redacted(b.len())),
            )
            .field("info", &self.info)
            .field("size", &self.size)
            .field("decoded", &self.decoded.as_ref().map(|b| Redacted(b.len())))
            .finish_non_exhaustive()
    }
}

struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0)
    }
}

/// Any reason a payload is refused before the vendor is called.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error(transparent)]
    Normalize(#[from] NormalizeError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// What the gateway does with a JSON `faceImage`: normalize (only when the
/// input is not canonical already), then decode once, in chunks, hashing,
/// sniffing and checking the structure as it goes, then apply the policy.
///
/// Errors come in that order: base64 first, then the image header, then the
/// policy, then the structure (a truncated or corrupt image,
/// [`ImageError::Incomplete`]).
pub fn prepare_base64(input: &str, policy: &ImagePolicy) -> Result<Prepared, PayloadError> {
    prepare_base64_keeping(input, policy, false)
}

/// [`prepare_base64`], also keeping the decoded image in [`Prepared::decoded`]
/// when `keep` (one buffer of the decoded size instead of a small chunk).
pub fn prepare_base64_keeping(
    input: &str,
    policy: &ImagePolicy,
    keep: bool,
) -> Result<Prepared, PayloadError> {
    // Most clients send canonical base64: one strict decoding pass proves it, and the
    // input is then forwarded as it is.
    if let Some(prepared) = prepare_canonical_keeping(input.as_bytes(), policy, keep) {
        return prepared;
    }
    let mut body =
        Vec::with_capacity(VENDOR_BODY_HEAD.len() + input.len() + 2 + VENDOR_BODY_TAIL.len());
    body.extend_from_slice(VENDOR_BODY_HEAD);
    normalize_into(input, &mut body)?;
    let scan = body
        .get(VENDOR_BODY_HEAD.len()..)
        .and_then(|b64| Scan::strict(b64, keep))
        .ok_or(NormalizeError::InvalidBase64)?;
    body.extend_from_slice(VENDOR_BODY_TAIL);
    scan.finish(Some(body), policy)
}

/// [`prepare_base64`] for input that is canonical base64 already; `None` when it is not
/// (nothing is refused for that: the caller goes on to normalize it). Canonical base64
/// holds only `[A-Za-z0-9+/=]`, so bytes that pass need no UTF-8 or JSON-escape check.
pub fn prepare_canonical(
    b64: &[u8],
    policy: &ImagePolicy,
) -> Option<Result<Prepared, PayloadError>> {
    prepare_canonical_keeping(b64, policy, false)
}

/// [`prepare_canonical`], keeping the decoded image when `keep`.
pub fn prepare_canonical_keeping(
    b64: &[u8],
    policy: &ImagePolicy,
    keep: bool,
) -> Option<Result<Prepared, PayloadError>> {
    if !may_be_canonical(b64) {
        return None;
    }
    Scan::strict(b64, keep).map(|scan| scan.finish(None, policy))
}

/// Sniff and apply the policy to a raw image (a multipart part or a raw
/// body), check its structure, then encode it straight into the vendor body.
/// Nothing is encoded for an image that is refused.
pub fn prepare_bytes(image: &[u8], policy: &ImagePolicy) -> Result<Prepared, PayloadError> {
    let info = sniff(image)?;
    policy.check(&info)?;
    let (sha256, complete) = hash_and_check(image);
    complete?;
    Ok(Prepared {
        vendor_body: Some(encode_vendor_body(image)),
        info,
        size: image.len(),
        sha256,
        decoded: None,
    })
}

/// SHA-256 and the structural check of a whole image, in one pass of
/// L1-sized chunks: each chunk is read by the check while the hash has just
/// brought it into the cache.
fn hash_and_check(image: &[u8]) -> ([u8; 32], Result<usize, ImageError>) {
    let mut hash = Sha256::new();
    let mut structure = StructureCheck::new();
    for chunk in image.chunks(CHUNK_BYTES) {
        hash.update(chunk);
        structure.feed(chunk);
    }
    (hash.finalize().into(), structure.finish())
}

/// The vendor body `{"faceImage":"<canonical base64 of image>"}`, encoded
/// straight into its one buffer.
pub fn encode_vendor_body(image: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(
        VENDOR_BODY_HEAD.len() + STANDARD.encoded_length(image.len()) + VENDOR_BODY_TAIL.len(),
    );
    body.extend_from_slice(VENDOR_BODY_HEAD);
    STANDARD.encode_append(image, &mut body);
    body.extend_from_slice(VENDOR_BODY_TAIL);
    body
}

/// The vendor body for a canonical base64 string: the one copy of it that
/// forwarding a client's image with other JSON members around it costs.
pub fn vendor_body(canonical: &str) -> Vec<u8> {
    let mut body =
        Vec::with_capacity(VENDOR_BODY_HEAD.len() + canonical.len() + VENDOR_BODY_TAIL.len());
    body.extend_from_slice(VENDOR_BODY_HEAD);
    body.extend_from_slice(canonical.as_bytes());
    body.extend_from_slice(VENDOR_BODY_TAIL);
    body
}

/// Base64 symbols decoded per step: a multiple of 4, so every chunk but the
/// last is whole groups, and small enough that the decoded chunk stays in the
/// L1 cache for the hash and the sniffer that read it right after.
const CHUNK_SYMBOLS: usize = 16 * 1024;
const CHUNK_BYTES: usize = CHUNK_SYMBOLS / 4 * 3;
/// What the sniffer reserves at once for a header past the first chunk.
const HEAD_RESERVE: usize = 256 * 1024;

/// What one decoding pass learnt.
struct Scan {
    size: usize,
    sha256: [u8; 32],
    sniffed: Result<ImageInfo, ImageError>,
    /// The structural check's verdict: where the image ended, or why it is
    /// not whole.
    complete: Result<usize, ImageError>,
    decoded: Option<Vec<u8>>,
}

impl Scan {
    /// Decodes canonical base64 in chunks; `None` unless all of it is strictly
    /// canonical (standard alphabet, padding only at the very end, zero unused
    /// bits). With `keep`, decodes into one buffer that the scan keeps.
    fn strict(b64: &[u8], keep: bool) -> Option<Scan> {
        if keep {
            return Self::strict_whole(b64);
        }
        let mut buf = [0u8; CHUNK_BYTES];
        let mut hash = Sha256::new();
        let mut sniffer = Sniffer::for_image_of(b64.len() / 4 * 3);
        let mut structure = StructureCheck::new();
        let mut size = 0;
        let mut chunks = b64.chunks(CHUNK_SYMBOLS).peekable();
        // Nothing at all is not canonical base64 of anything.
        chunks.peek()?;
        while let Some(chunk) = chunks.next() {
            // Padding is only allowed at the very end of the whole string.
            if chunks.peek().is_some() && chunk.last() == Some(&b'=') {
                return None;
            }
            let decoded = STANDARD.decode(chunk, Out::from_slice(&mut buf)).ok()?;
            hash.update(&*decoded);
            sniffer.feed(decoded);
            structure.feed(decoded);
            size += decoded.len();
        }
        Some(Scan {
            size,
            sha256: hash.finalize().into(),
            sniffed: sniffer.finish(),
            complete: structure.finish(),
            decoded: None,
        })
    }

    /// [`Self::strict`] into one buffer of the whole decoded image, which
    /// is kept.
    fn strict_whole(b64: &[u8]) -> Option<Scan> {
        if b64.is_empty() {
            return None;
        }
        let decoded = STANDARD.decode_to_vec(b64).ok()?;
        let (sha256, complete) = hash_and_check(&decoded);
        Some(Scan {
            size: decoded.len(),
            sha256,
            sniffed: sniff(&decoded),
            complete,
            decoded: Some(decoded),
        })
    }

    fn finish(
        self,
        vendor_body: Option<Vec<u8>>,
        policy: &ImagePolicy,
    ) -> Result<Prepared, PayloadError> {
        let info = self.sniffed?;
        policy.check(&info)?;
        self.complete?;
        Ok(Prepared {
            vendor_body,
            info,
            size: self.size,
            sha256: self.sha256,
            decoded: self.decoded.map(Bytes::from),
        })
    }
}

/// Sniffs an image that arrives in chunks, keeping only as much of its start
/// as the header needs (a JPEG's metadata segments may push its frame header
/// past the first chunk).
struct Sniffer {
    head: Vec<u8>,
    /// The image's size, at most: what `head` may have to hold.
    size_hint: usize,
    /// Head length at the last look; looking again only once the head has
    /// doubled keeps the total sniffing work linear in the image size.
    looked_at: usize,
    verdict: Option<Result<ImageInfo, ImageError>>,
}

impl Sniffer {
    fn for_image_of(size_hint: usize) -> Self {
        Sniffer {
            head: Vec::new(),
            size_hint,
            looked_at: 0,
            verdict: None,
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        if self.verdict.is_some() {
            return;
        }
        if self.head.is_empty() {
            // The common case: the whole header is in the first chunk.
            match sniff(chunk) {
                Err(ImageError::Truncated(_)) => {}
                verdict => {
                    self.verdict = Some(verdict);
                    return;
                }
            }
            self.looked_at = chunk.len();
            // Once, so that the head is not moved as it grows: a phone's
            // photo may carry 100 KB of metadata before its frame header.
            // Beyond HEAD_RESERVE it grows as a Vec does.
            self.head
                .reserve_exact(self.size_hint.clamp(chunk.len(), HEAD_RESERVE));
        }
        self.head.extend_from_slice(chunk);
        if self.head.len() >= 2 * self.looked_at {
            self.looked_at = self.head.len();
            match sniff(&self.head) {
                Err(ImageError::Truncated(_)) => {}
                verdict => self.verdict = Some(verdict),
            }
        }
    }

    fn finish(self) -> Result<ImageInfo, ImageError> {
        self.verdict.unwrap_or_else(|| sniff(&self.head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageFormat;

    #[test]
    fn chunking_matches_a_whole_decode() {
        // Lengths around the chunk size, so the last chunk is empty, one group
        // or partial; content that sniffs as an image only when whole.
        for len in [
            1,
            2,
            3,
            CHUNK_BYTES - 1,
            CHUNK_BYTES,
            CHUNK_BYTES + 1,
            5 * CHUNK_BYTES + 2,
        ] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 3) as u8).collect();
            let b64 = STANDARD.encode_to_string(&bytes);
            let scan = Scan::strict(b64.as_bytes(), false).expect("canonical");
            assert_eq!(scan.size, len);
            assert_eq!(scan.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
            assert_eq!(scan.sniffed, sniff(&bytes));
            assert_eq!(scan.complete, crate::check_structure(&bytes));
            let whole = Scan::strict(b64.as_bytes(), true).expect("canonical");
            assert_eq!(whole.size, len);
            assert_eq!(whole.sha256, scan.sha256);
            assert_eq!(whole.sniffed, scan.sniffed);
            assert_eq!(whole.complete, scan.complete);
            assert_eq!(whole.decoded.as_deref(), Some(&bytes[..]));
        }
    }

    #[test]
    fn the_structure_is_checked_across_chunks() {
        // 14 KB: two decode chunks, the EOI in the second.
        let jpeg = include_bytes!("../../../testdata/face-640x480.jpg");
        assert!(jpeg.len() > CHUNK_BYTES);
        let with_tail = [&jpeg[..], &[0x55; CHUNK_BYTES][..]].concat();
        for (bytes, expected) in [
            (&jpeg[..], Ok(jpeg.len())),
            (
                &jpeg[..jpeg.len() - 1],
                Err(ImageError::Incomplete(ImageFormat::Jpeg)),
            ),
            (
                &jpeg[..CHUNK_BYTES],
                Err(ImageError::Incomplete(ImageFormat::Jpeg)),
            ),
            (&with_tail[..], Ok(jpeg.len())),
        ] {
            let b64 = STANDARD.encode_to_string(bytes);
            for keep in [false, true] {
                let scan = Scan::strict(b64.as_bytes(), keep).unwrap();
                assert_eq!(
                    scan.complete,
                    expected,
                    "{} bytes, keep {keep}",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn padding_inside_is_not_canonical() {
        let mut b64 = "QUJD".repeat(CHUNK_SYMBOLS / 4);
        b64.replace_range(CHUNK_SYMBOLS - 2.., "==");
        b64.push_str("QUJD");
        assert!(Scan::strict(b64.as_bytes(), false).is_none());
        assert!(Scan::strict(b64.as_bytes(), true).is_none());
        assert!(Scan::strict(b"", false).is_none());
        assert!(Scan::strict(b"", true).is_none());
    }

    #[test]
    fn a_header_past_the_first_chunk_is_found() {
        // A JPEG whose frame header sits behind 5 maximal metadata segments.
        let mut jpeg = vec![0xFF, 0xD8];
        for _ in 0..5 {
            jpeg.extend_from_slice(&[0xFF, 0xE1, 0xFF, 0xFF]);
            jpeg.extend(std::iter::repeat_n(0x42, 0xFFFF - 2));
        }
        jpeg.extend_from_slice(&[
            0xFF, 0xC0, 0, 17, 8, 0, 240, 1, 64, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1,
        ]);
        jpeg.extend_from_slice(&[0xFF, 0xDA, 0, 12, 3, 1, 0, 2, 0x11, 3, 0x11, 0, 0x3F, 0]);
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        let scan = Scan::strict(STANDARD.encode_to_string(&jpeg).as_bytes(), false).unwrap();
        let info = scan.sniffed.unwrap();
        assert_eq!((info.width, info.height), (320, 240));
        assert_eq!(sniff(&jpeg), Ok(info));
    }

    #[test]
    fn the_head_is_reserved_once() {
        // 150 KB of metadata before the frame header, fed in chunks: the
        // head is allocated once, for all of it, and never moved.
        let mut jpeg = vec![0xFF, 0xD8];
        for _ in 0..3 {
            jpeg.extend_from_slice(&[0xFF, 0xE2, 0xC3, 0x52]);
            jpeg.extend(std::iter::repeat_n(0x42, 50_000));
        }
        jpeg.extend_from_slice(&[
            0xFF, 0xC0, 0, 17, 8, 0, 240, 1, 64, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1,
        ]);
        let mut sniffer = Sniffer::for_image_of(jpeg.len());
        let mut first = None;
        for chunk in jpeg.chunks(CHUNK_BYTES) {
            sniffer.feed(chunk);
            let at = (sniffer.head.as_ptr(), sniffer.head.capacity());
            assert_eq!(*first.get_or_insert(at), at, "the head moved");
        }
        assert_eq!(first.map(|(_, cap)| cap), Some(jpeg.len()));
        let info = sniffer.finish().unwrap();
        assert_eq!((info.width, info.height), (320, 240));
        // Beyond HEAD_RESERVE the head grows as it must.
        let mut big = Sniffer::for_image_of(10 << 20);
        big.feed(&jpeg[..CHUNK_BYTES]);
        assert_eq!(big.head.capacity(), HEAD_RESERVE);
    }
}
