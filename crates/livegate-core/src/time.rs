use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Time, injected so expiry, audit times, rate-limit windows and the
/// calendar month can be tested without waiting. The one clock of every
/// crate.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time.
    fn now(&self) -> SystemTime;

    /// Monotonic time since an arbitrary origin (for intervals such as
    /// GCRA's). By default, wall-clock time since the Unix epoch: right for
    /// test clocks, which only move when told to.
    fn monotonic(&self) -> Duration {
        self.unix()
    }

    /// Wall-clock time since the Unix epoch.
    fn unix(&self) -> Duration {
        self.now().duration_since(UNIX_EPOCH).unwrap_or_default()
    }
}

/// The system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// Since the first reading in this process: never goes back when the
    /// wall clock is set back.
    fn monotonic(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// Any `Fn() -> SystemTime` is a clock, which keeps test clocks one line.
impl<F> Clock for F
where
    F: Fn() -> SystemTime + Send + Sync + 'static,
{
    fn now(&self) -> SystemTime {
        self()
    }
}

/// A point in time written as RFC 3339 (`2027-01-31T00:00:00Z`) in
/// configuration files, JSON and Redis, so dumps stay readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub SystemTime);

/// The text is not an RFC 3339 time. Carries no copy of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 time such as 2027-01-31T00:00:00Z")]
pub struct TimestampError;

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_rfc3339_weak(s)
            .map(Timestamp)
            .map_err(|_| TimestampError)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&humantime::format_rfc3339(self.0), f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t: Timestamp = "2027-01-15T08:00:00Z".parse().unwrap();
        assert_eq!(
            t.0,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
        );
        assert_eq!(t.to_string(), "2027-01-15T08:00:00Z");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#""2027-01-15T08:00:00Z""#);
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!("tomorrow".parse::<Timestamp>().is_err());
        assert!(serde_json::from_str::<Timestamp>(r#""2027-13-01T00:00:00Z""#).is_err());
    }
}
