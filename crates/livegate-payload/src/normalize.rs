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
            .field("canonical", &self.canonical.as_ref().map(|s| Redacted(s.len())))
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

/// Decode a client's base64 image, accepting what clients commonly send, and say what to
/// forward to the vendor.
///
/// Accepted, in any combination: surrounding whitespace; a `data:image/<type>;base64,` or
/// `image/<type>;base64,` prefix (ASCII case-insensitive, `<type>` 1–32 of `[A-Za-z0-9.+-]`);
/// ASCII whitespace anywhere (line-wrapped MIME base64); the URL-safe alphabet, even mixed
/// with the standard one; missing (or partial) padding; non-zero unused bits in the last
/// symbol, which are dropped so the vendor gets strictly valid base64.
pub fn normalize_base64(input: &str) -> Result<Decoded, NormalizeError> {
    // Most clients already send canonical base64: one strict decode proves it, and the
    // input can then be forwarded as is, without building a second copy.
    if let Some(bytes) = decode_strict(input) {
        return Ok(Decoded {
            bytes,
            canonical: None,
        });
    }
    let body = strip_media_prefix(input.trim_ascii());
    // A prefix or a trailing newline alone leaves canonical base64 to copy out verbatim.
    if body.len() != input.len() {
        if let Some(bytes) = decode_strict(body) {
            return Ok(Decoded {
                bytes,
                canonical: Some(body.to_owned()),
            });
        }
    }
    normalize_slow(body.as_bytes())
}

/// Canonical padded standard base64 of raw bytes (for multipart and raw image bodies).
pub fn encode_canonical(bytes: &[u8]) -> String {
    STANDARD.encode_to_string(bytes)
}

/// Decodes `s` only if it is canonical base64.
fn decode_strict(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    // Cheap rejections first, so common non-canonical shapes (unpadded, newline-terminated,
    // empty) do not pay for an allocation and a decode that is bound to fail.
    if b.len() % 4 != 0 || !b.last().is_some_and(|&c| c == b'=' || symbol_value(c).is_some()) {
        return None;
    }
    // Strict: rejects anything but the standard alphabet, padding anywhere but at the end,
    // and non-zero unused bits, which is exactly "canonical".
    STANDARD.decode_to_vec(b).ok()
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

/// The general path: one cleaning copy into the buffer that becomes the canonical string,
/// then one decode of it.
fn normalize_slow(body: &[u8]) -> Result<Decoded, NormalizeError> {
    // Room for padding, so completing the last group never reallocates.
    let mut clean = Vec::with_capacity(body.len() + 2);
    copy_without_whitespace(body, &mut clean);
    if clean.is_empty() {
        return Err(NormalizeError::Empty);
    }
    // Written as a select rather than a lookup so it vectorises.
    for b in &mut clean {
        *b = match *b {
            b'-' => b'+',
            b'_' => b'/',
            other => other,
        };
    }

    let symbols = clean.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
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
    if let Some(last) = symbols.checked_sub(1).and_then(|i| clean.get_mut(i)) {
        *last = clear_unused_bits(*last, symbols % 4);
    }
    clean.truncate(symbols);
    clean.resize(symbols + needed, b'=');

    // Anything left outside the standard alphabet, including '=' before the end, fails here.
    let bytes = STANDARD
        .decode_to_vec(&clean)
        .map_err(|_| NormalizeError::InvalidBase64)?;
    // Cannot fail once the decode accepted it (all ASCII), but must not panic either.
    let canonical = String::from_utf8(clean).map_err(|_| NormalizeError::InvalidBase64)?;
    Ok(Decoded {
        bytes,
        canonical: Some(canonical),
    })
}

/// ASCII whitespace as the WHATWG and `u8::is_ascii_whitespace` define it.
fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0C' | b'\r')
}

/// Appends `src` to `out` minus ASCII whitespace, copying whole runs between whitespace so
/// 76-column MIME lines cost one memcpy each.
fn copy_without_whitespace(src: &[u8], out: &mut Vec<u8>) {
    let mut run_start = 0;
    let mut from = 0;
    while let Some(offset) = src.get(from..).and_then(find_whitespace) {
        let at = from + offset;
        out.extend_from_slice(src.get(run_start..at).unwrap_or_default());
        from = at + 1;
        run_start = from;
    }
    out.extend_from_slice(src.get(run_start..).unwrap_or_default());
}

fn find_whitespace(s: &[u8]) -> Option<usize> {
    const BLOCK: usize = 32;
    let mut blocks = s.chunks_exact(BLOCK);
    let mut offset = 0;
    for block in &mut blocks {
        // Every whitespace byte is <= b' ' and no base64 symbol is, so a branch-free
        // "any byte <= 0x20" test (which vectorises) skips clean blocks.
        if block.iter().fold(false, |acc, &b| acc | (b <= b' ')) {
            if let Some(i) = block.iter().position(|&b| is_whitespace(b)) {
                return Some(offset + i);
            }
        }
        offset += BLOCK;
    }
    blocks
        .remainder()
        .iter()
        .position(|&b| is_whitespace(b))
        .map(|i| offset + i)
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
        .copied()
        .unwrap_or(c)
}
