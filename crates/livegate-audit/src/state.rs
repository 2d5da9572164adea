//! The places and counters shared by the layer, the sink and the writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

/// One place per record admitted and not yet written. A place is taken by
/// the layer (or by the sink, for a record that arrives unreserved), is
/// then *forgotten* (it belongs to the record, not to a permit value), and
/// is given back by the writer with `add_permits` once the record is
/// written.
pub(crate) struct State {
    pub(crate) places: Arc<Semaphore>,
    pub(crate) capacity: usize,
    pub(crate) max_wait: Duration,
    pub(crate) queued: AtomicU64,
    pub(crate) written: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) unwritten: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    failing: AtomicBool,
    dropping: AtomicBool,
    /// Woken after every written batch (for `flush`).
    pub(crate) progress: Notify,
}

impl State {
    pub(crate) fn new(capacity: usize, max_wait: Duration) -> Self {
        Self {
            places: Arc::new(Semaphore::new(capacity)),
            capacity,
            max_wait,
            queued: AtomicU64::new(0),
            written: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            unwritten: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            dropping: AtomicBool::new(false),
            progress: Notify::new(),
        }
    }

    pub(crate) fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// `n` records are written by every sink: their places are free again.
    pub(crate) fn written(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        self.queued.fetch_sub(n as u64, Ordering::AcqRel);
        self.places.add_permits(n);
        self.progress.notify_waiters();
    }

    /// A write attempt failed (it is retried).
    pub(crate) fn write_error(&self) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether some sink is failing now (logged per sink by the writers).
    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    /// A record that could not be queued. Logged when records start being
    /// lost, not per record.
    pub(crate) fn unwritten(&self, why: &'static str) {
        self.unwritten.fetch_add(1, Ordering::Relaxed);
        if !self.dropping.swap(true, Ordering::AcqRel) {
            tracing::error!(
                target: "livegate::audit",
                reason = why,
                unwritten_total = self.unwritten.load(Ordering::Relaxed),
                "audit records are not being written"
            );
        }
    }

    /// A record was queued: if records were being lost, they no longer are.
    pub(crate) fn accepted(&self) {
        if self.dropping.load(Ordering::Relaxed) && self.dropping.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                target: "livegate::audit",
                unwritten_total = self.unwritten.load(Ordering::Relaxed),
                "audit records are accepted again"
            );
        }
    }
}

/// Doubling waits between write attempts, capped.
pub(crate) struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(20);
    const MAX: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        Self(Self::FIRST)
    }

    pub(crate) fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (d * 2).min(Self::MAX);
        d
    }
}
