//! Time, injected so the limiter's arithmetic is testable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where a limiter reads the time.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time since an arbitrary origin (for GCRA).
    fn monotonic(&self) -> Duration;
    /// Wall-clock time since the Unix epoch (for the calendar month).
    fn unix(&self) -> Duration;
}

/// The real clocks.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }

    fn unix(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

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
    fn monotonic(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::SeqCst))
    }

    fn unix(&self) -> Duration {
        self.unix_origin + self.monotonic()
    }
}
