//! Where protection keeps what it remembers: image fingerprints for replay
//! detection and stored answers for idempotent retries. In memory (the
//! embedded default, one replica) or in Redis (shared by every replica).
//!
//! Scopes are opaque strings chosen by the caller: a tenant id, or `*` for
//! the deployment-wide replay scope.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

mod memory;
mod redis;

pub use self::redis::RedisStore;
pub use memory::MemoryStore;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What identifies an image for replay detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// SHA-256 of the decoded image bytes.
    pub sha256: [u8; 32],
    /// The 64-bit perceptual hash, when the image could be decoded.
    pub phash: Option<u64>,
}

/// An earlier image that a new one repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayMatch {
    /// The vendor's transactionId of the earlier image.
    pub transaction_id: String,
    /// The same bytes (SHA-256), not only a perceptual match.
    pub exact: bool,
    /// Hamming distance of the perceptual hashes (0 for an exact match).
    pub distance: u32,
}

impl ReplayMatch {
    /// `exact` or `perceptual`, as the audit record and the span say it.
    pub fn kind(&self) -> &'static str {
        if self.exact { "exact" } else { "perceptual" }
    }
}

/// The largest perceptual distance a store can search for: the index is
/// [`BANDS`] bands of `64 / BANDS` bits, and two hashes within
/// `BANDS - 1` bits of each other agree on at least one band
/// (pigeonhole), so every such pair is found.
pub const BANDS: u32 = 8;
pub const MAX_DISTANCE: u32 = BANDS - 1;

/// Replay memory.
pub trait ReplayStore: Send + Sync + 'static {
    /// An image recorded in `scope` within its window that `fp` repeats:
    /// an exact digest match first (the first transaction recorded with
    /// that digest), else the perceptual match with the smallest distance
    /// `<= max_distance` (ties: the earliest expiry, then the earliest
    /// recorded). `max_distance` is
    /// at most [`MAX_DISTANCE`].
    fn find(
        &self,
        scope: &str,
        fp: &Fingerprint,
        max_distance: u32,
    ) -> BoxFuture<'_, Result<Option<ReplayMatch>, StoreError>>;

    /// Remembers `fp` as the image of `transaction_id` for `window`. An
    /// exact digest already remembered keeps its first transaction id (and
    /// its expiry).
    fn record<'a>(
        &'a self,
        scope: &'a str,
        fp: &'a Fingerprint,
        transaction_id: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A vendor answer kept for idempotent retries: never the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// HTTP status of the vendor's answer.
    pub status: u16,
    /// The vendor's JSON body, as it was.
    pub body: Bytes,
    /// Response headers the gateway added that a retry gets again
    /// (`x-transaction-id`, `x-livegate-decision`, `x-livegate-replay-of`),
    /// as (name, value) pairs.
    pub headers: Vec<(String, String)>,
}

/// What [`IdempotencyStore::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new (or its earlier holder gave it up): this request
    /// holds it until it calls `complete` or `release`, or the lease ends.
    Claimed,
    /// An answer for the same image is stored: serve it.
    Done(StoredAnswer),
    /// The key was used with a different image.
    Mismatch,
    /// Another request with this key and image is still in flight after
    /// waiting `wait`.
    Busy,
}

/// Idempotent retries.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` in `scope` for a request whose image has `digest`.
    /// While another request holds the key with the same digest, waits
    /// (polling or notified) up to `wait` for its answer. A claim expires
    /// after `lease` if its holder never completes or releases it (a
    /// crashed replica).
    fn claim<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        digest: &'a [u8; 32],
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// Stores the answer for the claimed key for `retention`, waking
    /// requests waiting on it.
    fn complete<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        digest: &'a [u8; 32],
        answer: &'a StoredAnswer,
        retention: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Gives up a claim without an answer (the vendor failed): a waiting or
    /// later request with the key may claim it.
    fn release<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        digest: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The store did not answer in time or failed; the text names the
    /// operation and the cause, never a key or an image.
    #[error("protection store unavailable: {0}")]
    Unavailable(String),
}
