//! In-memory protection store: one replica's replay memory and idempotent
//! retries (the embedded default). Gives the same answers as the
//! [Redis store](super::RedisStore) for the same calls.
//!
//! # Replay
//!
//! Each recorded fingerprint is one entry, numbered in record order. Per
//! scope, two indexes point at entries: digest → entry (exact matches), and
//! the [`BANDS`] band buckets — band `i` of the perceptual hash (its bits
//! `8i..8i+8`) with value `v` → the entries whose hash has `v` there. A
//! `find` with `max_distance = d` reads the buckets of bands `0..=d` only:
//! two hashes within `d` bits of each other agree on at least one of any
//! `d + 1` bands. It returns the exact match if any, else the smallest
//! distance `<= d`; ties go to the earliest expiry, then the earliest
//! recorded. Recording a digest that is already remembered changes nothing
//! (the same bytes have the same perceptual hash).
//!
//! # Idempotency
//!
//! Entries are keyed by scope and the SHA-256 of the client's key (so an
//! entry's size does not depend on the key). A pending entry (a claim)
//! lives for its lease, a done entry (the answer) for its retention. A
//! claim that finds a pending entry with its digest waits on that entry's
//! [`Notify`], woken by `complete` or `release`, or by its own timer at the
//! end of the lease or of `wait`.
//!
//! # Expiry and bounds
//!
//! Expired entries are never returned and are removed lazily: each call
//! first drops every entry whose time has passed, in expiry order (an
//! ordered index makes that `O(log n)` per entry). Each side is capped —
//! by default 1 000 000 fingerprints and 100 000 idempotency keys, see
//! [`MemoryStore::with_capacity`] — and adding one more evicts the
//! oldest recorded entry first, whatever its expiry. An evicted pending
//! claim wakes its waiters, which may then claim the key: under that much
//! load a duplicate vendor call is preferred to unbounded memory. At the
//! default caps the store holds roughly 300–400 MB (replay) plus the stored
//! answers.
//!
//! # Time
//!
//! [`tokio::time::Instant`], so tests can pause and advance the clock.
//! Nothing is shared across replicas: each remembers what it saw.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{Notify, futures::OwnedNotified};
use tokio::time::Instant;

use super::{
    BANDS, BoxFuture, Claim, Fingerprint, IdempotencyStore, MAX_DISTANCE, ReplayMatch, ReplayStore,
    StoreError, StoredAnswer,
};

/// Default cap on remembered fingerprints, all scopes together.
const DEFAULT_REPLAY_CAPACITY: usize = 1_000_000;
/// Default cap on idempotency entries (pending or done), all scopes
/// together.
const DEFAULT_IDEMPOTENCY_CAPACITY: usize = 100_000;

/// See the [module docs](self).
pub struct MemoryStore {
    replay: Mutex<Replay>,
    idempotency: Mutex<Idempotency>,
}

impl MemoryStore {
    /// A store with the default caps: 1 000 000 fingerprints, 100 000
    /// idempotency keys.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_REPLAY_CAPACITY, DEFAULT_IDEMPOTENCY_CAPACITY)
    }

    /// A store keeping at most `fingerprints` replay entries and
    /// `idempotency_keys` idempotency entries (each at least 1).
    pub fn with_capacity(fingerprints: usize, idempotency_keys: usize) -> Self {
        Self {
            replay: Mutex::new(Replay::new(fingerprints.max(1))),
            idempotency: Mutex::new(Idempotency::new(idempotency_keys.max(1))),
        }
    }

    fn replay(&self) -> MutexGuard<'_, Replay> {
        self.replay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn idempotency(&self) -> MutexGuard<'_, Idempotency> {
        self.idempotency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims `key` now if it can be decided now; else what to wait on and
    /// until when.
    fn try_claim(
        &self,
        key: &IdemKey,
        digest: &[u8; 32],
        lease: Duration,
        deadline: Instant,
    ) -> Result<Claim, (OwnedNotified, Instant)> {
        let mut idem = self.idempotency();
        let now = Instant::now();
        idem.purge(now);
        match idem.entries.get(key) {
            None => {
                let notify = Arc::new(Notify::new());
                idem.insert(key.clone(), *digest, now + lease, State::Pending(notify));
                Ok(Claim::Claimed)
            }
            Some(e) if e.digest != *digest => Ok(Claim::Mismatch),
            Some(e) => match &e.state {
                State::Done(answer) => Ok(Claim::Done(answer.clone())),
                State::Pending(_) if now >= deadline => Ok(Claim::Busy),
                // Made under the lock, so a `complete` right after it
                // still wakes this waiter.
                State::Pending(notify) => {
                    Err((Arc::clone(notify).notified_owned(), e.expires.min(deadline)))
                }
            },
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("fingerprints", &self.replay().entries.len())
            .field("idempotency_keys", &self.idempotency().entries.len())
            .finish()
    }
}

// ---------------------------------------------------------------- replay

struct Replay {
    capacity: usize,
    next_id: u64,
    /// By id: record order, oldest first.
    entries: BTreeMap<u64, Entry>,
    by_expiry: BTreeSet<(Instant, u64)>,
    scopes: HashMap<Arc<str>, ScopeIndex>,
}

struct Entry {
    scope: Arc<str>,
    sha256: [u8; 32],
    phash: Option<u64>,
    transaction_id: String,
    expires: Instant,
}

#[derive(Default)]
struct ScopeIndex {
    exact: HashMap<[u8; 32], u64>,
    /// (band, band value) → entry ids, ascending (ids only grow).
    buckets: HashMap<(u8, u8), VecDeque<u64>>,
}

impl ScopeIndex {
    fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }
}

/// Band `band` (0-based) of a perceptual hash.
fn band_value(phash: u64, band: u32) -> u8 {
    // Truncation keeps exactly the band's 8 bits.
    (phash >> (band * (64 / BANDS))) as u8
}

impl Replay {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            next_id: 0,
            entries: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            scopes: HashMap::new(),
        }
    }

    fn purge(&mut self, now: Instant) {
        while let Some(&(expires, id)) = self.by_expiry.first() {
            if expires > now {
                break;
            }
            self.remove(id);
        }
    }

    fn remove(&mut self, id: u64) {
        let Some(e) = self.entries.remove(&id) else {
            return;
        };
        self.by_expiry.remove(&(e.expires, id));
        let Some(index) = self.scopes.get_mut(&e.scope) else {
            return;
        };
        index.exact.remove(&e.sha256);
        if let Some(p) = e.phash {
            for band in 0..BANDS {
                let slot = (band as u8, band_value(p, band));
                if let Some(ids) = index.buckets.get_mut(&slot) {
                    if let Ok(i) = ids.binary_search(&id) {
                        ids.remove(i);
                    }
                    if ids.is_empty() {
                        index.buckets.remove(&slot);
                    }
                }
            }
        }
        if index.is_empty() {
            self.scopes.remove(&e.scope);
        }
    }

    fn find(&self, scope: &str, fp: &Fingerprint, max_distance: u32) -> Option<ReplayMatch> {
        let index = self.scopes.get(scope)?;
        if let Some(id) = index.exact.get(&fp.sha256) {
            return Some(ReplayMatch {
                transaction_id: self.entries[id].transaction_id.clone(),
                exact: true,
                distance: 0,
            });
        }
        let p = fp.phash?;
        let max_distance = max_distance.min(MAX_DISTANCE);
        let mut best: Option<(u32, Instant, u64)> = None;
        for band in 0..=max_distance {
            let Some(ids) = index.buckets.get(&(band as u8, band_value(p, band))) else {
                continue;
            };
            for &id in ids {
                let e = &self.entries[&id];
                let Some(q) = e.phash else { continue };
                let distance = (p ^ q).count_ones();
                let candidate = (distance, e.expires, id);
                if distance <= max_distance && best.is_none_or(|b| candidate < b) {
                    best = Some(candidate);
                }
            }
        }
        best.map(|(distance, _, id)| ReplayMatch {
            transaction_id: self.entries[&id].transaction_id.clone(),
            exact: false,
            distance,
        })
    }

    fn record(&mut self, scope: &str, fp: &Fingerprint, transaction_id: &str, expires: Instant) {
        if self
            .scopes
            .get(scope)
            .is_some_and(|i| i.exact.contains_key(&fp.sha256))
        {
            return;
        }
        while self.entries.len() >= self.capacity {
            let Some((&oldest, _)) = self.entries.first_key_value() else {
                break;
            };
            self.remove(oldest);
        }
        let id = self.next_id;
        self.next_id += 1;
        let scope: Arc<str> = match self.scopes.get_key_value(scope) {
            Some((s, _)) => Arc::clone(s),
            None => scope.into(),
        };
        let index = self.scopes.entry(Arc::clone(&scope)).or_default();
        index.exact.insert(fp.sha256, id);
        if let Some(p) = fp.phash {
            for band in 0..BANDS {
                index
                    .buckets
                    .entry((band as u8, band_value(p, band)))
                    .or_default()
                    .push_back(id);
            }
        }
        self.by_expiry.insert((expires, id));
        self.entries.insert(
            id,
            Entry {
                scope,
                sha256: fp.sha256,
                phash: fp.phash,
                transaction_id: transaction_id.to_owned(),
                expires,
            },
        );
    }
}

impl ReplayStore for MemoryStore {
    fn find(
        &self,
        scope: &str,
        fp: &Fingerprint,
        max_distance: u32,
    ) -> BoxFuture<'_, Result<Option<ReplayMatch>, StoreError>> {
        let mut replay = self.replay();
        replay.purge(Instant::now());
        let found = replay.find(scope, fp, max_distance);
        Box::pin(std::future::ready(Ok(found)))
    }

    fn record<'a>(
        &'a self,
        scope: &'a str,
        fp: &'a Fingerprint,
        transaction_id: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut replay = self.replay();
            let now = Instant::now();
            replay.purge(now);
            replay.record(scope, fp, transaction_id, now + window);
            Ok(())
        })
    }
}

// ----------------------------------------------------------- idempotency

/// Scope and the SHA-256 of the client's key.
type IdemKey = (Arc<str>, [u8; 32]);

fn idem_key(scope: &str, key: &str) -> IdemKey {
    (scope.into(), Sha256::digest(key.as_bytes()).into())
}

struct Idempotency {
    capacity: usize,
    next_id: u64,
    entries: HashMap<IdemKey, IdemEntry>,
    /// By id: creation order, oldest first.
    order: BTreeMap<u64, IdemKey>,
    by_expiry: BTreeSet<(Instant, u64)>,
}

struct IdemEntry {
    id: u64,
    digest: [u8; 32],
    expires: Instant,
    state: State,
}

enum State {
    /// Claimed; waiters wait on the [`Notify`].
    Pending(Arc<Notify>),
    Done(StoredAnswer),
}

impl Idempotency {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            next_id: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    fn purge(&mut self, now: Instant) {
        while let Some(&(expires, id)) = self.by_expiry.first() {
            if expires > now {
                break;
            }
            self.remove_id(id);
        }
    }

    fn remove_id(&mut self, id: u64) {
        if let Some(key) = self.order.get(&id).cloned() {
            self.remove(&key);
        }
    }

    /// Removes an entry, waking whoever waits on it.
    fn remove(&mut self, key: &IdemKey) {
        if let Some(e) = self.entries.remove(key) {
            self.order.remove(&e.id);
            self.by_expiry.remove(&(e.expires, e.id));
            if let State::Pending(notify) = e.state {
                notify.notify_waiters();
            }
        }
    }

    fn insert(&mut self, key: IdemKey, digest: [u8; 32], expires: Instant, state: State) {
        while self.entries.len() >= self.capacity {
            let Some((&oldest, _)) = self.order.first_key_value() else {
                break;
            };
            self.remove_id(oldest);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.order.insert(id, key.clone());
        self.by_expiry.insert((expires, id));
        self.entries.insert(
            key,
            IdemEntry {
                id,
                digest,
                expires,
                state,
            },
        );
    }

    fn complete(&mut self, key: IdemKey, digest: &[u8; 32], answer: &StoredAnswer, until: Instant) {
        let Some(e) = self.entries.get_mut(&key) else {
            self.insert(key, *digest, until, State::Done(answer.clone()));
            return;
        };
        if e.digest != *digest || matches!(e.state, State::Done(_)) {
            return;
        }
        self.by_expiry.remove(&(e.expires, e.id));
        self.by_expiry.insert((until, e.id));
        e.expires = until;
        if let State::Pending(notify) = std::mem::replace(&mut e.state, State::Done(answer.clone()))
        {
            notify.notify_waiters();
        }
    }
}

impl IdempotencyStore for MemoryStore {
    fn claim<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        digest: &'a [u8; 32],
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            let key = idem_key(scope, key);
            let deadline = Instant::now() + wait;
            loop {
                let (notified, wake_at) = match self.try_claim(&key, digest, lease, deadline) {
                    Ok(claim) => return Ok(claim),
                    Err(wait_on) => wait_on,
                };
                // Woken early or not, the next turn decides again.
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep_until(wake_at) => {}
                }
            }
        })
    }

    fn complete<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        digest: &'a [u8; 32],
        answer: &'a StoredAnswer,
        retention: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = idem_key(scope, key);
            let mut idem = self.idempotency();
            let now = Instant::now();
            idem.purge(now);
            idem.complete(key, digest, answer, now + retention);
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        digest: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = idem_key(scope, key);
            let mut idem = self.idempotency();
            idem.purge(Instant::now());
            if idem
                .entries
                .get(&key)
                .is_some_and(|e| e.digest == *digest && matches!(e.state, State::Pending(_)))
            {
                idem.remove(&key);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u8, phash: u64) -> Fingerprint {
        Fingerprint {
            sha256: [n; 32],
            phash: Some(phash),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_fingerprint_is_evicted_at_the_cap() {
        let store = MemoryStore::with_capacity(2, 1);
        let w = Duration::from_secs(60);
        store.record("s", &fp(1, 0), "tx-1", w).await.unwrap();
        store
            .record("s", &fp(2, u64::MAX), "tx-2", w)
            .await
            .unwrap();
        store.record("t", &fp(3, 0), "tx-3", w).await.unwrap();
        assert_eq!(store.replay().entries.len(), 2);
        assert_eq!(store.find("s", &fp(1, 0), 7).await.unwrap(), None);
        let two = store.find("s", &fp(2, 0), 7).await.unwrap().unwrap();
        assert_eq!(two.transaction_id, "tx-2");
        // The evicted entry left no bucket behind in its scope.
        let replay = store.replay();
        assert_eq!(replay.scopes["s"].buckets.len(), BANDS as usize);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_removed_not_only_hidden() {
        let store = MemoryStore::new();
        store
            .record("s", &fp(1, 7), "tx-1", Duration::from_millis(10))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_millis(11)).await;
        store.find("t", &fp(9, 0), 7).await.unwrap();
        let replay = store.replay();
        assert!(replay.entries.is_empty() && replay.scopes.is_empty());
        assert!(replay.by_expiry.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn idempotency_keys_are_capped_oldest_first() {
        let store = MemoryStore::with_capacity(1, 2);
        let (lease, wait) = (Duration::from_secs(60), Duration::ZERO);
        for k in ["a", "b", "c"] {
            let c = store.claim("s", k, &[1; 32], lease, wait).await.unwrap();
            assert_eq!(c, Claim::Claimed);
        }
        assert_eq!(store.idempotency().entries.len(), 2);
        // "a" was evicted: claimable again; "c" still held.
        let a = store.claim("s", "a", &[1; 32], lease, wait).await.unwrap();
        assert_eq!(a, Claim::Claimed);
        let c = store.claim("s", "c", &[1; 32], lease, wait).await.unwrap();
        assert_eq!(c, Claim::Busy);
    }
}
