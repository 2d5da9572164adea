//! Calendar months in UTC, without a date crate (Howard Hinnant's
//! days-from-civil arithmetic).

use std::fmt;
use std::time::Duration;

/// A calendar month, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Month {
    pub year: i64,
    /// 1..=12
    pub month: u32,
}

const DAY: u64 = 86_400;

/// The month containing `unix` (time since the Unix epoch).
pub fn month_of(unix: Duration) -> Month {
    let (year, month, _) = civil_from_days((unix.as_secs() / DAY) as i64);
    Month { year, month }
}

impl Month {
    /// The first instant of this month, as time since the Unix epoch.
    pub fn start(self) -> Duration {
        let days = days_from_civil(self.year, self.month, 1);
        Duration::from_secs(u64::try_from(days).unwrap_or(0) * DAY)
    }

    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Time from `unix` until the next month begins.
    pub fn until_next(self, unix: Duration) -> Duration {
        self.next().start().saturating_sub(unix)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn known_dates() {
        // 2026-11-26T23:41:55Z
        assert_eq!(month_of(secs(1_795_736_515)).to_string(), "2026-11");
        assert_eq!(month_of(secs(0)).to_string(), "1970-01");
        // 2024-02-29T12:00:00Z (leap day)
        assert_eq!(month_of(secs(1_709_208_000)).to_string(), "2024-02");
        // 2024-03-01T00:00:00Z
        let march = month_of(secs(1_709_251_200));
        assert_eq!(march.to_string(), "2024-03");
        assert_eq!(march.start(), secs(1_709_251_200));
        // 2026-12-31T23:59:59Z → 1 s to 2027-01
        let dec = month_of(secs(1_798_761_599));
        assert_eq!(dec.to_string(), "2026-12");
        assert_eq!(dec.until_next(secs(1_798_761_599)), secs(1));
        assert_eq!(dec.next().to_string(), "2027-01");
    }

    proptest! {
        #[test]
        fn round_trips(days in 0i64..200_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
            let month = month_of(secs(days as u64 * DAY));
            prop_assert!(month.start() <= secs(days as u64 * DAY));
            prop_assert!(month.next().start() > secs(days as u64 * DAY));
        }
    }
}
