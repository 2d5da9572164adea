use std::fmt;

use base64_simd::STANDARD;

/// Result of normalizing a client's `faceImage` string.
#[derive(Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Decoded image bytes.
    pub bytes: Vec<u8>,
    /// `None`: the input was already canonical (plain, padded, standard-alphabet base64 with
    /// no prefix or whitespace); forward it unchanged.
    /// `Some(s)`: the canonical padded standard base64 to forward instead.
    pub canonical: Option<String>,
}

impl fmt::Debug for Decoded {
    // Sizes only: the content is a face image, and Debug output ends up in logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoded")
            .field("bytes", &Redacted(self.bytes.len()))
            .field(
                "canonical",
                &self.canonical.as_ref().map(|s| Redacted(s.len())),
            )
            .finish()
    }
}

/// Stands in for biometric content in Debug output.
pub(crate) struct Redacted(pub(crate) usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0)
    }
}

/// Why a `faceImage` string could not be normalized.
///
/// Deliberately carries no position or character: any part of the input is biometric data,
/// and these errors reach logs and response bodies.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NormalizeError {
    /// Nothing left after stripping the prefix and whitespace
    /// (e.g. `"data:image/png;base64,"` alone, or `"   "`).
    #[error("image data is empty")]
    Empty,
    /// A character outside both base64 alphabets, misplaced or excess `=` padding, or an
    /// impossible length (one symbol past a whole number of 4-symbol groups).
    #[error("image data is not valid base64")]
    InvalidBase64,
}

/// Decode a client's base64 image, accepting what clients commonly send: the reference
/// behaviour of normalization, for tests, fuzzing and benchmarks. The request path does
/// the same with [`crate::prepare_base64`], which never holds the whole decoded image.
///
/// Accepted, in any combination: surrounding whitespace; a `data:image/<type>;base64,` or
/// `image/<type>;base64,` prefix (ASCII case-insensitive, `<type>` 1–32 of `[A-Za-z0-9.+-]`);
/// ASCII whitespace anywhere (line-wrapped MIME base64); the URL-safe alphabet, even mixed
/// with the standard one; missing (or partial) padding; non-zero unused bits in the last
/// symbol, which are dropped so the vendor gets strictly valid base64.
pub fn normalize_base64(input: &str) -> Result<Decoded, NormalizeError> {
    if let Some(bytes) = decode_strict(input) {
        return Ok(Decoded {
            bytes,
            canonical: None,
        });
    }
    let mut out = Vec::with_capacity(input.len() + 2);
    normalize_into(input, &mut out)?;
    let bytes = STANDARD
        .decode_to_vec(&out)
        .map_err(|_| NormalizeError::InvalidBase64)?;
    // Only ASCII was appended (or the decode above would have failed).
    let canonical = String::from_utf8(out).map_err(|_| NormalizeError::InvalidBase64)?;
    Ok(Decoded {
        bytes,
        canonical: Some(canonical),
    })
}

/// Whether `b64` may be canonical base64, judged from its length and last byte only: lets
/// common non-canonical shapes (unpadded, newline-terminated, empty) skip a decode that is
/// bound to fail.
pub(crate) fn may_be_canonical(b64: &[u8]) -> bool {
    b64.len() % 4 == 0
        && b64
            .last()
            .is_some_and(|&c| c == b'=' || symbol_value(c).is_some())
}

/// Appends to `out` the canonical padded standard base64 of a client's `faceImage` that is
/// not canonical as it stands: prefix and whitespace removed, URL-safe symbols mapped,
/// unused bits cleared, padding completed. One pass copies the input into `out`, which the
/// caller sizes to hold the whole vendor body, so the rewritten form is written once, into
/// its final place.
///
/// Symbols outside both alphabets are copied as they are: the decode that follows refuses
/// them. On error `out` may hold a partial result.
pub fn normalize_into(input: &str, out: &mut Vec<u8>) -> Result<(), NormalizeError> {
    let body = strip_media_prefix(input.trim_ascii());
    let start = out.len();
    // Room for padding, so completing the last group never reallocates.
    out.reserve(body.len() + 2);
    copy_without_whitespace(body, out);
    let clean = &mut out[start..];
    if clean.is_empty() {
        return Err(NormalizeError::Empty);
    }
    // Chunked so URL-safe input (where '-' and '_' show up within the first few dozen
    // symbols) stops looking early, while each chunk's test still vectorises.
    if clean.chunks(4096).any(has_url_safe) {
        to_standard_alphabet(clean);
    }

    let symbols = clean.len() - clean.iter().rev().take_while(|&&c| c == b'=').count();
    let padding = clean.len() - symbols;
    let needed = match symbols % 4 {
        0 => 0,
        2 => 2,
        3 => 1,
        _ => return Err(NormalizeError::InvalidBase64),
    };
    // Missing padding is fine; more than the last group needs is not (this also refuses
    // padding with no symbols before it).
    if padding > needed {
        return Err(NormalizeError::InvalidBase64);
    }
    out.truncate(start + symbols);
    if let Some(last) = out.last_mut() {
        *last = clear_unused_bits(*last, symbols % 4);
    }
    out.extend(std::iter::repeat_n(b'=', needed));
    Ok(())
}

/// Canonical padded standard base64 of raw bytes (for multipart and raw image bodies).
#[must_use]
pub fn encode_canonical(bytes: &[u8]) -> String {
    STANDARD.encode_to_string(bytes)
}

/// Decodes `s` only if it is canonical base64.
fn decode_strict(s: &str) -> Option<Vec<u8>> {
    // Strict: rejects anything but the standard alphabet, padding anywhere but at the end,
    // and non-zero unused bits, which is exactly "canonical".
    may_be_canonical(s.as_bytes())
        .then(|| STANDARD.decode_to_vec(s.as_bytes()).ok())
        .flatten()
}

/// Removes a `data:image/<type>;base64,` or `image/<type>;base64,` prefix, if the whole
/// prefix is there; otherwise returns `s` unchanged and the decoder rejects the `:`/`;`.
fn strip_media_prefix(s: &str) -> &str {
    const MAX_SUBTYPE: usize = 32;
    let after_scheme = strip_prefix_ignore_case(s, "data:").unwrap_or(s);
    // Without the full pattern, "image/..." may just be base64 that starts with those
    // letters (all six are in the alphabet), so only a complete prefix is stripped.
    let Some(subtype) = strip_prefix_ignore_case(after_scheme, "image/") else {
        return s;
    };
    let subtype_len = subtype
        .bytes()
        .take(MAX_SUBTYPE + 1)
        .take_while(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'))
        .count();
    if !(1..=MAX_SUBTYPE).contains(&subtype_len) {
        return s;
    }
    subtype
        .get(subtype_len..)
        .and_then(|rest| strip_prefix_ignore_case(rest, ";base64,"))
        .unwrap_or(s)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix.as_bytes()) {
        // The matched head is ASCII, so this is a char boundary.
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// Maps `-` and `_` to `+` and `/` in place. Only called when the scan saw one, as it
/// costs a pass over the bytes.
fn to_standard_alphabet(bytes: &mut [u8]) {
    // A select rather than a table lookup, so it vectorises.
    for b in bytes {
        *b = match *b {
            b'-' => b'+',
            b'_' => b'/',
            other => other,
        };
    }
}

/// Branch-free (a fold, not `any`) so it vectorises; kept out of line because, inlined
/// into the chunked caller, LLVM left it scalar (4x slower, seen in the benchmark).
#[inline(never)]
fn has_url_safe(s: &[u8]) -> bool {
    s.iter()
        .fold(false, |acc, &b| acc | (b == b'-') | (b == b'_'))
}

/// ASCII whitespace as the WHATWG and `u8::is_ascii_whitespace` define it.
fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0C' | b'\r')
}

/// Appends `src` to `out` minus ASCII whitespace, copying whole runs between whitespace so
/// 76-column MIME lines cost one memcpy each.
///
fn copy_without_whitespace(src: &str, out: &mut Vec<u8>) {
    const BLOCK: usize = 32;
    let bytes = src.as_bytes();
    let mut run_start = 0;
    let mut cut_at = |at: usize, out: &mut Vec<u8>| {
        out.extend_from_slice(bytes.get(run_start..at).unwrap_or_default());
        run_start = at + 1;
    };
    let mut blocks = bytes.chunks_exact(BLOCK);
    let mut base = 0;
    for block in &mut blocks {
        // Every whitespace byte is <= b' ' and no base64 symbol is: a vectorised screen
        // lets most blocks through without looking at single bytes or words.
        if block.iter().fold(false, |acc, &b| acc | (b <= b' ')) {
            for (w, word) in block.chunks_exact(8).enumerate() {
                let Some(&word) = word.first_chunk::<8>() else {
                    continue;
                };
                let word = u64::from_le_bytes(word);
                let mut candidates = bytes_below_0x21(word);
                while candidates != 0 {
                    let at = base + w * 8 + (candidates.trailing_zeros() / 8) as usize;
                    if bytes.get(at).copied().is_some_and(is_whitespace) {
                        cut_at(at, out);
                    }
                    candidates &= candidates - 1;
                }
            }
        }
        base += BLOCK;
    }
    for (i, &b) in blocks.remainder().iter().enumerate() {
        if is_whitespace(b) {
            cut_at(base + i, out);
        }
    }
    out.extend_from_slice(bytes.get(run_start..).unwrap_or_default());
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` that is below 0x21, exactly (no carries between
/// bytes: each sum stays below 0x100).
fn bytes_below_0x21(word: u64) -> u64 {
    let at_least_0x21_ignoring_high_bit = (word & !HIGH_BITS) + (0x80 - 0x21) * LOW_BITS;
    !(at_least_0x21_ignoring_high_bit | word) & HIGH_BITS
}

const STANDARD_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn symbol_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// A final symbol of a partial group carries bits past the end of the data (4 of them after
/// 2 symbols, 2 after 3); strict decoders, the vendor's included, want them zero.
fn clear_unused_bits(c: u8, symbols_in_last_group: usize) -> u8 {
    let mask = match symbols_in_last_group {
        2 => 0b11_0000,
        3 => 0b11_1100,
        _ => return c,
    };
    symbol_value(c)
        .and_then(|v| STANDARD_ALPHABET.get(usize::from(v & mask)))
        .map_or(c, |&b| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_below_0x21_is_exact_in_every_lane() {
        for lane in 0..8 {
            for b in 0..=255u8 {
                // Surround the byte under test with neighbours on both sides of the limit.
                let mut word = [b'A', 0x21, 0x7F, 0xFF, b'+', 0x80, 0xA0, b'z'];
                word[lane] = b;
                let got = bytes_below_0x21(u64::from_le_bytes(word));
                let expected = word
                    .iter()
                    .enumerate()
                    .filter(|&(_, &x)| x < 0x21)
                    .fold(0u64, |m, (i, _)| m | 0x80 << (8 * i));
                assert_eq!(got, expected, "byte {b:#04x} in lane {lane}");
            }
        }
    }

    #[test]
    fn whitespace_is_removed_at_every_position() {
        // Covers every offset within and across the 32-byte blocks and 8-byte words.
        let text: String = (0..100).map(|i| char::from(b'A' + i % 26)).collect();
        for at in 0..=text.len() {
            for ws in [" ", "\t", "\n", "\r\n", "\x0C", "  \r\n\t"] {
                let mut input = text.clone();
                input.insert_str(at, ws);
                let mut out = Vec::new();
                copy_without_whitespace(&input, &mut out);
                assert_eq!(out, text.as_bytes(), "{ws:?} at {at}");
            }
        }
    }

    #[test]
    fn other_control_bytes_are_kept_for_the_decoder_to_refuse() {
        let input = "AB\0CD\x0BEF\x1FGH";
        let mut out = Vec::new();
        copy_without_whitespace(&input.repeat(10), &mut out);
        assert_eq!(out, input.repeat(10).as_bytes());
    }

    #[test]
    fn url_safe_is_found_anywhere() {
        let mut bytes = vec![b'A'; 10_000];
        assert!(!has_url_safe(&bytes));
        for at in [0, 31, 4095, 4096, 9999] {
            for c in [b'-', b'_'] {
                bytes[at] = c;
                assert!(bytes.chunks(4096).any(has_url_safe));
                bytes[at] = b'A';
            }
        }
    }

    #[test]
    fn unused_bits_are_cleared_in_either_alphabet() {
        // Q = 16 = 0b010000 keeps all bits after 2 symbols; R = 0b010001 does not.
        assert_eq!(clear_unused_bits(b'R', 2), b'Q');
        assert_eq!(clear_unused_bits(b'/', 2), b'w');
        assert_eq!(clear_unused_bits(b'_', 2), b'w');
        assert_eq!(clear_unused_bits(b'/', 3), b'8');
        assert_eq!(clear_unused_bits(b'-', 3), b'8');
        assert_eq!(clear_unused_bits(b'/', 0), b'/');
        // Not a symbol at all: left for the decoder to refuse.
        assert_eq!(clear_unused_bits(b'*', 2), b'*');
        assert_eq!(clear_unused_bits(0xA9, 3), 0xA9);
    }

    #[test]
    fn prefix_is_only_stripped_whole() {
        assert_eq!(strip_media_prefix("data:image/png;base64,QUJD"), "QUJD");
        assert_eq!(strip_media_prefix("image/png;base64,QUJD"), "QUJD");
        assert_eq!(strip_media_prefix("image/pngQUJD"), "image/pngQUJD");
        assert_eq!(strip_media_prefix("data:image/png"), "data:image/png");
        assert_eq!(strip_media_prefix("dat"), "dat");
        assert_eq!(
            strip_media_prefix("data:image/é;base64,"),
            "data:image/é;base64,"
        );
    }
}
