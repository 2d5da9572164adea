use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string — the vendor key, the pepper, a tenant key, an admin
/// token: `Debug`, `Display` and `Serialize` print `[redacted]` (so
/// `check-config`, logs and panics never show it); reading it takes an
/// explicit [`Secret::expose`] at the one place it is used.
///
/// Deliberately not `PartialEq`: comparing secrets belongs in a
/// constant-time comparison of their keyed hashes.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

const REDACTED: &str = "[redacted]";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// Only a string is a secret: a number or a boolean is refused rather than
/// turned into text (a pepper of `007` read as the number 7 would change
/// every key's hash without a hint why).
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_itself() {
        let s = Secret::new("hunter2-value");
        for out in [
            format!("{s}"),
            format!("{s:?}"),
            serde_json::to_string(&s).unwrap(),
        ] {
            assert!(!out.contains("hunter2"), "{out}");
        }
        assert_eq!(s.expose(), "hunter2-value");
    }
}
