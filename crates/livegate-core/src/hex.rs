//! Lowercase hexadecimal, the one encoder and decoder every crate uses
//! (key hashes, Redis key names, image digests, generated tokens and ids).

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lowercase hex, two characters per byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Exactly `N` bytes from `2 * N` hex digits of either case; `None` for any
/// other length or character (no sign, no prefix, no whitespace).
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = encode(&bytes);
        assert_eq!(text.len(), 512);
        assert!(text.starts_with("000102") && text.ends_with("fdfeff"));
        assert_eq!(encode(&[0xab, 0x0c]), "ab0c");
        assert_eq!(encode(&[]), "");
        assert_eq!(decode::<2>("ab0c"), Some([0xab, 0x0c]));
        assert_eq!(decode::<2>("AB0C"), Some([0xab, 0x0c]));
        for bad in ["ab0", "ab0c0", "+b0c", "ab 0", "abgc", "0xab"] {
            assert_eq!(decode::<2>(bad), None, "{bad}");
        }
        let digest: [u8; 32] = std::array::from_fn(|i| (i * 7) as u8);
        assert_eq!(decode::<32>(&encode(&digest)), Some(digest));
    }
}
