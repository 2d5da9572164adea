//! `Duration`s in configuration files, in the unit their key names:
//! `timeout_ms = 500` is `#[serde(rename = "timeout_ms", with =
//! "livegate_core::serde_duration::millis")] timeout: Duration`. The key
//! names and units operators write stay as they are; the code gets real
//! durations.

/// Whole milliseconds (`*_ms` keys).
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Whole hours (`*_hours` keys).
pub mod hours {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs() / 3600)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(|h| Duration::from_secs(h.saturating_mul(3600)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct S {
        #[serde(rename = "wait_ms", with = "super::millis")]
        wait: Duration,
        #[serde(rename = "keep_hours", with = "super::hours")]
        keep: Duration,
    }

    #[test]
    fn keys_keep_their_names_and_units() {
        let s: S = serde_json::from_str(r#"{"wait_ms":250,"keep_hours":2}"#).unwrap();
        assert_eq!(
            s,
            S {
                wait: Duration::from_millis(250),
                keep: Duration::from_secs(7200)
            }
        );
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"wait_ms":250,"keep_hours":2}"#
        );
        assert!(serde_json::from_str::<S>(r#"{"wait_ms":"soon","keep_hours":2}"#).is_err());
        assert!(serde_json::from_str::<S>(r#"{"wait_ms":-1,"keep_hours":2}"#).is_err());
    }
}
