//! Tenant key format: `lvg_<kid>_<secret>`.
//!
//! - `lvg_` is a fixed prefix so secret scanners (and humans) can recognise a
//!   leaked livegate key.
//! - `kid` is the public key id: [`KEY_ID_LEN`] characters of `[a-z0-9]`. It
//!   is what the store is indexed by and what audit records name.
//! - `secret` is [`SECRET_LEN`] base62 characters (`[0-9A-Za-z]`), about
//!   256 bits of entropy. Only its keyed hash is ever stored.
//!
//! Neither alphabet contains `_`, so the layout is unambiguous, and a key is
//! a single "word" for editors and shells (double-click selects all of it).

use std::fmt;
use std::str::FromStr;

use rand::RngExt;
use serde::{Deserialize, Serialize};

use livegate_core::Secret;

use crate::hash::{KeyHash, Pepper, hash_key};

/// Prefix of every tenant key.
pub const KEY_PREFIX: &str = "lvg_";
/// Length of the public key id.
pub const KEY_ID_LEN: usize = 12;
/// Length of the secret part.
pub const SECRET_LEN: usize = 43;
/// Total length of a well-formed key.
pub const KEY_LEN: usize = KEY_PREFIX.len() + KEY_ID_LEN + 1 + SECRET_LEN;

const KEY_ID_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const SECRET_ALPHABET: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn is_key_id_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_secret_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Why a presented key or key id was refused.
///
/// The messages never include the offending input: it may be a real key
/// pasted into the wrong place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("api key does not start with the expected prefix")]
    Prefix,
    #[error("api key has the wrong length")]
    Length,
    #[error("api key is not of the form prefix, key id, underscore, secret")]
    Separator,
    #[error("api key id must be {KEY_ID_LEN} characters of a-z and 0-9")]
    KeyId,
    #[error("api key secret must be {SECRET_LEN} characters of 0-9, a-z and A-Z")]
    Secret,
}

/// A validated public key id.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn validate(s: &str) -> Result<(), KeyFormatError> {
        if s.len() == KEY_ID_LEN && s.bytes().all(is_key_id_char) {
            Ok(())
        } else {
            Err(KeyFormatError::KeyId)
        }
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The kid is public (it appears in audit records), so showing it helps.
        f.debug_tuple("KeyId").field(&self.0).finish()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for KeyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = KeyFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::validate(s)?;
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for KeyId {
    type Error = KeyFormatError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::validate(&s)?;
        Ok(Self(s))
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> Self {
        id.0
    }
}

/// A freshly generated key. `plaintext` is the whole `lvg_…` key, to be shown
/// to the operator once; store only [`NewKey::hash`].
#[derive(Debug, Clone)]
pub struct NewKey {
    pub kid: KeyId,
    pub plaintext: Secret,
}

impl NewKey {
    /// The hash to store for this key.
    ///
    /// The fields are public, so a hand-built `NewKey` may hold anything; a
    /// plaintext that is not a well-formed key hashes as an empty secret,
    /// which no presented key can match (fail closed, no panic).
    #[must_use]
    pub fn hash(&self, pepper: &Pepper) -> KeyHash {
        let secret = parse(self.plaintext.expose()).map_or("", |p| p.secret);
        hash_key(pepper, self.kid.as_str(), secret)
    }
}

/// Generates a new key from the thread-local CSPRNG (ChaCha, seeded from the
/// operating system).
#[must_use]
pub fn generate() -> NewKey {
    let mut rng = rand::rng();
    let mut byte = || rng.random::<u8>();
    let kid = random_string(&mut byte, KEY_ID_ALPHABET, KEY_ID_LEN);
    let secret = random_string(&mut byte, SECRET_ALPHABET, SECRET_LEN);
    let plaintext = format!("{KEY_PREFIX}{kid}_{secret}");
    debug_assert!(parse(&plaintext).is_ok());
    NewKey {
        kid: KeyId(kid),
        plaintext: Secret::new(plaintext),
    }
}

/// Uniform choice over `alphabet` by rejection sampling on bytes: a plain
/// `byte % len` would favour the first `256 % len` characters.
fn random_string<const N: usize>(
    mut next_byte: impl FnMut() -> u8,
    alphabet: &[u8; N],
    len: usize,
) -> String {
    let limit = 256 - 256 % N;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let b = usize::from(next_byte());
        if b < limit {
            out.push(char::from(alphabet[b % N]));
        }
    }
    out
}

/// The two halves of a key as presented by a client, borrowed from the
/// request. `Debug` shows the kid but never the secret.
#[derive(Clone, Copy)]
pub struct PresentedKey<'a> {
    pub kid: &'a str,
    pub secret: &'a str,
}

impl PresentedKey<'_> {
    #[must_use]
    pub fn hash(&self, pepper: &Pepper) -> KeyHash {
        hash_key(pepper, self.kid, self.secret)
    }
}

impl fmt::Debug for PresentedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedKey")
            .field("kid", &self.kid)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Splits a presented key into kid and secret, refusing anything that is not
/// exactly the generated layout (no trimming, no case folding).
pub fn parse(s: &str) -> Result<PresentedKey<'_>, KeyFormatError> {
    let rest = s.strip_prefix(KEY_PREFIX).ok_or(KeyFormatError::Prefix)?;
    if s.len() != KEY_LEN {
        return Err(KeyFormatError::Length);
    }
    // Length and prefix are known, so byte offsets are fixed. Check bytes
    // rather than slicing `&str` so multi-byte input cannot hit a char
    // boundary panic.
    let bytes = rest.as_bytes();
    let (kid, tail) = bytes.split_at(KEY_ID_LEN);
    let (sep, secret) = tail.split_at(1);
    if sep != b"_" {
        return Err(KeyFormatError::Separator);
    }
    if !kid.iter().copied().all(is_key_id_char) {
        return Err(KeyFormatError::KeyId);
    }
    if !secret.iter().copied().all(is_secret_char) {
        return Err(KeyFormatError::Secret);
    }
    // All ASCII now, so these are char boundaries.
    Ok(PresentedKey {
        kid: &rest[..KEY_ID_LEN],
        secret: &rest[KEY_ID_LEN + 1..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> String {
        format!("{KEY_PREFIX}{}_{}", "abc123def456", "A".repeat(SECRET_LEN))
    }

    #[test]
    fn layout_constants_add_up() {
        assert_eq!(KEY_LEN, 60);
        assert_eq!(valid().len(), KEY_LEN);
    }

    #[test]
    fn generated_key_round_trips_through_parse() {
        let new = generate();
        let p = parse(new.plaintext.expose()).expect("generated key parses");
        assert_eq!(p.kid, new.kid.as_str());
        assert_eq!(p.kid.len(), KEY_ID_LEN);
        assert_eq!(p.secret.len(), SECRET_LEN);
        assert!(new.plaintext.expose().starts_with("lvg_"));
        assert_eq!(new.kid.as_str().parse::<KeyId>(), Ok(new.kid.clone()));
    }

    #[test]
    fn generated_keys_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a.kid, b.kid);
        assert_ne!(a.plaintext.expose(), b.plaintext.expose());
        let (pa, pb) = (
            parse(a.plaintext.expose()).unwrap(),
            parse(b.plaintext.expose()).unwrap(),
        );
        assert_ne!(pa.secret, pb.secret);
    }

    /// Bits of entropy a generated secret carries: `SECRET_LEN * log2(62)`.
    fn secret_entropy_bits() -> f64 {
        SECRET_LEN as f64 * (SECRET_ALPHABET.len() as f64).log2()
    }

    #[test]
    fn secret_has_at_least_128_bits() {
        // 43 * log2(62) = 256.03: the spec floor is 128, the design aim 256.
        assert_eq!(SECRET_ALPHABET.len(), 62);
        assert!(secret_entropy_bits() >= 256.0, "{}", secret_entropy_bits());
        // The alphabet has no duplicates, or the entropy claim is wrong.
        let mut sorted = SECRET_ALPHABET.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 62);
        assert!(SECRET_ALPHABET.iter().copied().all(is_secret_char));
        let mut kid_sorted = KEY_ID_ALPHABET.to_vec();
        kid_sorted.sort_unstable();
        kid_sorted.dedup();
        assert_eq!(kid_sorted.len(), 36);
    }

    #[test]
    fn generator_uses_the_whole_alphabet() {
        // Guards against a sampling bug that silently shrinks the alphabet
        // (and so the entropy). Over 200 secrets (8600 draws) every one of
        // the 62 characters appears with overwhelming probability.
        let mut seen = [false; 128];
        for _ in 0..200 {
            let k = generate();
            for b in parse(k.plaintext.expose()).unwrap().secret.bytes() {
                seen[usize::from(b)] = true;
            }
        }
        for &c in SECRET_ALPHABET {
            assert!(seen[usize::from(c)], "never generated {:?}", char::from(c));
        }
    }

    #[test]
    fn sampling_is_exactly_uniform_over_all_byte_values() {
        // Feeding every byte value once must yield each character equally
        // often: that is what the rejection step buys over `byte % len`.
        for (alphabet, n) in [(&SECRET_ALPHABET[..], 62), (&KEY_ID_ALPHABET[..], 36)] {
            // High values first, so the ones that must be rejected come up.
            let mut bytes = (0..=255u8).rev();
            let draws = 256 - 256 % n;
            let out = if n == 62 {
                random_string(|| bytes.next().unwrap(), SECRET_ALPHABET, draws)
            } else {
                random_string(|| bytes.next().unwrap(), KEY_ID_ALPHABET, draws)
            };
            assert_eq!(bytes.next(), None, "rejected too little");
            for &c in alphabet {
                let count = out.bytes().filter(|&b| b == c).count();
                assert_eq!(count, draws / n, "{:?}", char::from(c));
            }
        }
    }

    #[test]
    fn parse_accepts_exact_layout() {
        let s = valid();
        let p = parse(&s).unwrap();
        assert_eq!(p.kid, "abc123def456");
        assert_eq!(p.secret, "A".repeat(SECRET_LEN));
    }

    #[test]
    fn parse_rejects_wrong_prefix() {
        let s = valid();
        for bad in [
            s.replacen("lvg_", "LVG_", 1),
            s.replacen("lvg_", "lvx_", 1),
            s.replacen("lvg_", "lvg-", 1),
            s[4..].to_owned(),
            format!(" {s}"),
        ] {
            assert_eq!(parse(&bad).unwrap_err(), KeyFormatError::Prefix, "{bad}");
        }
    }

    #[test]
    fn parse_rejects_wrong_lengths() {
        let short_kid = format!("lvg_abc123def45_{}", "A".repeat(SECRET_LEN));
        let long_kid = format!("lvg_abc123def4567_{}", "A".repeat(SECRET_LEN));
        let short_secret = format!("lvg_abc123def456_{}", "A".repeat(SECRET_LEN - 1));
        let long_secret = format!("lvg_abc123def456_{}", "A".repeat(SECRET_LEN + 1));
        for bad in [
            short_kid,
            long_kid,
            short_secret,
            long_secret,
            format!("{} ", valid()),
        ] {
            assert_eq!(parse(&bad).unwrap_err(), KeyFormatError::Length, "{bad}");
        }
        assert!(parse("").is_err());
        assert!(parse("lvg_").is_err());
    }

    #[test]
    fn parse_rejects_bad_characters() {
        let secret = "A".repeat(SECRET_LEN);
        for kid in [
            "ABC123DEF456",
            "abc123def45-",
            "abc 23def456",
            "abc123dEf456",
        ] {
            let s = format!("lvg_{kid}_{secret}");
            assert!(parse(&s).is_err(), "{s}");
        }
        assert_eq!(
            parse(&format!("lvg_ABC123def456_{secret}")).unwrap_err(),
            KeyFormatError::KeyId
        );
        for bad in ['-', '+', '/', '=', ' ', '.', '\0'] {
            let mut s = valid();
            s.replace_range(KEY_LEN - 1.., &bad.to_string());
            assert_eq!(parse(&s).unwrap_err(), KeyFormatError::Secret, "{s:?}");
        }
        // A multi-byte char of the right byte length must not panic or pass.
        let mut s = valid();
        s.replace_range(KEY_LEN - 2.., "é");
        assert_eq!(s.len(), KEY_LEN);
        assert_eq!(parse(&s).unwrap_err(), KeyFormatError::Secret);
    }

    #[test]
    fn parse_rejects_extra_underscores() {
        let secret = "A".repeat(SECRET_LEN);
        let cases = [
            // underscore where the separator is expected is fine; elsewhere not
            format!("lvg_abc_23def456_{secret}"),
            format!("lvg_abc123def456_{}_", &secret[..SECRET_LEN - 1]),
            format!("lvg_abc123def456__{}", &secret[..SECRET_LEN - 1]),
            format!("lvg__bc123def456_{secret}"),
            format!("_vg_abc123def456_{secret}"),
            // and the separator itself is required
            format!("lvg_abc123def4567{secret}"),
        ];
        for bad in cases {
            assert_eq!(bad.len(), KEY_LEN, "{bad}");
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_id_validates_and_serializes_as_string() {
        assert!("abc123def456".parse::<KeyId>().is_ok());
        for bad in [
            "",
            "abc123def45",
            "abc123def4567",
            "ABC123DEF456",
            "abc123def45_",
        ] {
            assert_eq!(bad.parse::<KeyId>(), Err(KeyFormatError::KeyId), "{bad}");
        }
        let id: KeyId = "abc123def456".parse().unwrap();
        assert_eq!(id.to_string(), "abc123def456");
        assert_eq!(id.as_ref(), "abc123def456");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""abc123def456""#);
        let back: KeyId = serde_json::from_str(r#""abc123def456""#).unwrap();
        assert_eq!(back, id);
        // Deserializing must validate, or a corrupt store row becomes a KeyId.
        assert!(serde_json::from_str::<KeyId>(r#""ABC123DEF456""#).is_err());
        assert!(serde_json::from_str::<KeyId>(r#""abc""#).is_err());
    }

    #[test]
    fn redacted_debug_and_display() {
        let new = generate();
        let plain = new.plaintext.expose().to_owned();
        let p = parse(&plain).unwrap();
        let outputs = [
            format!("{:?}", new.plaintext),
            format!("{}", new.plaintext),
            format!("{new:?}"),
            format!("{p:?}"),
            format!("{:#?}", p),
        ];
        for out in outputs {
            assert!(!out.contains(p.secret), "{out}");
            assert!(!out.contains(&plain), "{out}");
        }
        assert_eq!(format!("{}", new.plaintext), "[redacted]");
        assert!(format!("{p:?}").contains(p.kid));
    }

    #[test]
    fn new_key_hash_matches_presented_hash() {
        let pepper = Pepper::new(b"0123456789abcdef").unwrap();
        let new = generate();
        let p = parse(new.plaintext.expose()).unwrap();
        assert!(new.hash(&pepper).verify(&p.hash(&pepper)));

        // A hand-built NewKey with a bogus plaintext must not panic, and
        // must not produce the hash of a real secret.
        let bogus = NewKey {
            kid: new.kid.clone(),
            plaintext: Secret::new("é".repeat(KEY_LEN)),
        };
        assert!(!bogus.hash(&pepper).verify(&p.hash(&pepper)));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_near_valid_length(s in "[a-zA-Z0-9_é€ -]{50,65}") {
            let _ = parse(&s);
            let with_prefix = format!("{KEY_PREFIX}{s}");
            let _ = parse(&with_prefix);
        }

        #[test]
        fn parse_accepts_only_what_it_can_rebuild(kid in "[a-z0-9]{12}", secret in "[0-9A-Za-z]{43}") {
            let s = format!("lvg_{kid}_{secret}");
            let p = parse(&s).unwrap();
            proptest::prop_assert_eq!(p.kid, kid.as_str());
            proptest::prop_assert_eq!(p.secret, secret.as_str());
        }
    }
}
