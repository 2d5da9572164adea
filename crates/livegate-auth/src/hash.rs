//! Keyed hashing of tenant keys: `HMAC-SHA-256(pepper, kid ":" secret)`.
//!
//! Only this hash is stored, so a leaked store (a Redis dump, a backup) is
//! useless without the pepper, which lives in a separate secret. The kid is
//! part of the message so that a hash cannot be moved to another key id.
//! Key ids never contain `:`, so the message is unambiguous.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Minimum pepper length; 16 bytes is already 128 bits if it is random.
pub const MIN_PEPPER_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PepperError {
    #[error("key-hashing pepper must be at least {MIN_PEPPER_LEN} bytes, got {0}")]
    TooShort(usize),
}

/// The server-side HMAC key.
///
/// Holds the keyed HMAC state rather than the raw bytes: each hash then
/// starts from a clone of the precomputed inner/outer pads, and the pepper
/// itself is not kept around in memory in readable form.
#[derive(Clone)]
pub struct Pepper(HmacSha256);

impl Pepper {
    /// Accepts `&str`, `String`, `&[u8]` or `Vec<u8>`. The bytes are used as
    /// given: trimming a trailing newline from a secret file is the caller's
    /// job.
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Self, PepperError> {
        let bytes = bytes.as_ref();
        if bytes.len() < MIN_PEPPER_LEN {
            return Err(PepperError::TooShort(bytes.len()));
        }
        let mac = HmacSha256::new_from_slice(bytes).expect("HMAC accepts keys of any length");
        Ok(Self(mac))
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper([redacted])")
    }
}

/// A stored key hash. `==` and [`KeyHash::verify`] are constant-time.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time comparison, so response timing does not reveal how many
    /// leading bytes of a guessed hash were right.
    #[must_use]
    pub fn verify(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl PartialEq for KeyHash {
    fn eq(&self, other: &Self) -> bool {
        self.verify(other)
    }
}

impl Eq for KeyHash {}

/// Computes the hash stored for (or checked against) a key.
#[must_use]
pub fn hash_key(pepper: &Pepper, kid: &str, secret: &str) -> KeyHash {
    let mut mac = pepper.0.clone();
    mac.update(kid.as_bytes());
    mac.update(b":");
    mac.update(secret.as_bytes());
    KeyHash(mac.finalize().into_bytes().into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("key hash must be 64 hexadecimal characters")]
pub struct KeyHashParseError;

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&livegate_core::hex::encode(&self.0))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not a credential: without the pepper it cannot be checked against
        // guesses, and the secret it covers has 256 bits anyway.
        write!(f, "KeyHash({self})")
    }
}

impl FromStr for KeyHash {
    type Err = KeyHashParseError;

    /// Accepts either case; [`Display`](fmt::Display) always writes lowercase.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        livegate_core::hex::decode(s)
            .map(Self)
            .ok_or(KeyHashParseError)
    }
}

impl TryFrom<String> for KeyHash {
    type Error = KeyHashParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<KeyHash> for String {
    fn from(h: KeyHash) -> Self {
        h.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEPPER: &str = "test-pepper-0123456789";
    const KID: &str = "abc123def456";
    const SECRET: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg";

    fn pepper() -> Pepper {
        Pepper::new(PEPPER).unwrap()
    }

    #[test]
    fn known_vector() {
        // Derived independently with Python's hmac module:
        // hmac.new(b"test-pepper-0123456789",
        //          b"abc123def456:0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg",
        //          hashlib.sha256).hexdigest()
        let expected = "d211349efcccf952875d7ff5f7d8d34acc402b317dc0726e430f475283387079";
        assert_eq!(hash_key(&pepper(), KID, SECRET).to_string(), expected);
    }

    #[test]
    fn matches_plain_hmac_of_kid_colon_secret() {
        let mut mac = HmacSha256::new_from_slice(PEPPER.as_bytes()).unwrap();
        mac.update(format!("{KID}:{SECRET}").as_bytes());
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(hash_key(&pepper(), KID, SECRET).as_bytes(), &expected);
    }

    #[test]
    fn hash_depends_on_every_input() {
        let base = hash_key(&pepper(), KID, SECRET);
        let other_pepper = Pepper::new("test-pepper-0123456788").unwrap();
        assert!(!base.verify(&hash_key(&other_pepper, KID, SECRET)));
        assert!(!base.verify(&hash_key(&pepper(), "abc123def457", SECRET)));
        assert!(!base.verify(&hash_key(&pepper(), KID, &SECRET.replace('g', "h"))));
        // Same concatenation, different split: the separator keeps them apart.
        assert!(!base.verify(&hash_key(&pepper(), "abc123def45", &format!("6{SECRET}"))));
        assert!(base.verify(&hash_key(&pepper(), KID, SECRET)));
    }

    #[test]
    fn verify_detects_any_single_bit_flip() {
        let h = hash_key(&pepper(), KID, SECRET);
        assert!(h.verify(&h));
        for byte in 0..32 {
            for bit in 0..8 {
                let mut b = *h.as_bytes();
                b[byte] ^= 1 << bit;
                let flipped = KeyHash::from_bytes(b);
                assert!(!h.verify(&flipped), "byte {byte} bit {bit}");
                assert!(!flipped.verify(&h));
                assert!(h != flipped);
            }
        }
    }

    #[test]
    fn hex_round_trip_and_strictness() {
        let h = hash_key(&pepper(), KID, SECRET);
        let hex = h.to_string();
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        assert_eq!(hex.parse::<KeyHash>().unwrap(), h);
        assert_eq!(hex.to_uppercase().parse::<KeyHash>().unwrap(), h);
        assert!(hex[..63].parse::<KeyHash>().is_err());
        assert!(format!("{hex}0").parse::<KeyHash>().is_err());
        assert!(hex.replacen(&hex[..1], "g", 1).parse::<KeyHash>().is_err());
        assert!(format!("+{}", &hex[1..]).parse::<KeyHash>().is_err());
        assert!("é".repeat(32).parse::<KeyHash>().is_err());
        let all = KeyHash::from_bytes(core::array::from_fn(|i| i as u8 * 8 + 1));
        assert_eq!(all.to_string().parse::<KeyHash>().unwrap(), all);
    }

    #[test]
    fn serde_as_hex_string() {
        let h = hash_key(&pepper(), KID, SECRET);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{h}\""));
        assert_eq!(serde_json::from_str::<KeyHash>(&json).unwrap(), h);
        assert!(serde_json::from_str::<KeyHash>("\"abcd\"").is_err());
    }

    #[test]
    fn pepper_minimum_length() {
        assert_eq!(Pepper::new("").unwrap_err(), PepperError::TooShort(0));
        assert_eq!(
            Pepper::new([7u8; MIN_PEPPER_LEN - 1]).unwrap_err(),
            PepperError::TooShort(15)
        );
        assert!(Pepper::new([7u8; MIN_PEPPER_LEN]).is_ok());
        assert!(Pepper::new(vec![0u8; 64]).is_ok());
        assert!(Pepper::new(String::from(PEPPER)).is_ok());
    }

    #[test]
    fn pepper_debug_is_redacted() {
        let out = format!("{:?} {:#?}", pepper(), pepper());
        assert!(!out.contains(PEPPER), "{out}");
        assert!(!out.contains("0123456789"), "{out}");
        assert!(out.contains("[redacted]"));
    }
}
