//! Time, injected so the limiter's arithmetic is testable: the limiter
//! reads [`livegate_core::Clock`]'s `monotonic` (GCRA) and `unix` (the
//! calendar month); [`ManualClock`] moves both only when told to.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use livegate_core::{Clock, SystemClock};

/// A clock that moves only when told to (both readings move together).
/// Clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    micros: Arc<AtomicU64>,
    unix_origin: Duration,
}

impl ManualClock {
    /// Starts at monotonic zero and the given wall-clock time.
    pub fn new(unix: Duration) -> Self {
        Self {
            micros: Arc::default(),
            unix_origin: unix,
        }
    }

    pub fn advance(&self, by: Duration) {
        let us = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + self.unix()
    }

    fn monotonic(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::SeqCst))
    }

    fn unix(&self) -> Duration {
        self.unix_origin + self.monotonic()
    }
}
