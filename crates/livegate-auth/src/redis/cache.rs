//! The per-replica lookup cache.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::store::KeyEntry;

/// One cached lookup.
#[derive(Debug, Clone)]
pub(super) struct Cached {
    /// `None`: verified absent (unknown kid, or its tenant is gone).
    pub(super) entry: Option<KeyEntry>,
    /// The kid's tenant when known, so a refresh is one round trip and a
    /// tenant invalidation finds the entry.
    pub(super) tenant: Option<String>,
    /// When the Redis read that produced this entry started.
    pub(super) read_at: Instant,
}

/// Entries never hold a lock across an await; every operation is one map
/// operation, so a poisoned lock holds a consistent map and is used anyway.
#[derive(Debug)]
pub(super) struct Cache {
    map: RwLock<HashMap<String, Cached>>,
    ttl: Duration,
    stale_limit: Duration,
    sweep_at: RwLock<usize>,
}

const FIRST_SWEEP: usize = 4096;

impl Cache {
    pub(super) fn new(ttl: Duration, stale_limit: Duration) -> Self {
        Self {
            map: RwLock::default(),
            ttl,
            stale_limit,
            sweep_at: RwLock::new(FIRST_SWEEP),
        }
    }

    pub(super) fn get(&self, kid: &str) -> Option<Cached> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    pub(super) fn put(&self, kid: &str, cached: Cached) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        map.insert(kid.to_owned(), cached);
        // Unknown kids are cached too, so a flood of random kids must not
        // grow the map without bound: when it doubles, drop what could no
        // longer be served (absent entries past the TTL, keys past the
        // stale limit).
        let mut sweep_at = self
            .sweep_at
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() >= *sweep_at {
            let now = Instant::now();
            map.retain(|_, c| {
                let age = now.saturating_duration_since(c.read_at);
                if c.entry.is_some() {
                    age < self.stale_limit
                } else {
                    age < self.ttl
                }
            });
            *sweep_at = (map.len() * 2).max(FIRST_SWEEP);
        }
    }

    pub(super) fn remove_kid(&self, kid: &str) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(kid);
    }

    pub(super) fn remove_tenant(&self, tenant: &str) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, c| c.tenant.as_deref() != Some(tenant));
    }

    pub(super) fn clear(&self) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Makes every entry due for a re-read at its next use; verified keys
    /// stay servable as stale (within the stale limit) while Redis fails,
    /// entries of absent kids are dropped.
    pub(super) fn expire_all(&self) {
        let due = Instant::now().checked_sub(self.ttl);
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, c| c.entry.is_some());
        for c in map.values_mut() {
            if let Some(due) = due {
                c.read_at = c.read_at.min(due);
            }
        }
    }

    /// Applies an invalidation message (`k:<kid>` or `t:<tenant>`).
    pub(super) fn invalidate(&self, message: &str) {
        if let Some(kid) = message.strip_prefix("k:") {
            self.remove_kid(kid);
        } else if let Some(tenant) = message.strip_prefix("t:") {
            self.remove_tenant(tenant);
        } else {
            // Unknown message: be safe.
            self.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::hash::{Pepper, hash_key};
    use crate::store::{KeyRecord, Tenant};

    fn cached(kid: &str, tenant: &str, read_at: Instant) -> Cached {
        let pepper = Pepper::new("0123456789abcdef").unwrap();
        let key = KeyRecord::new(kid.parse().unwrap(), tenant, hash_key(&pepper, kid, "s"));
        Cached {
            entry: Some(KeyEntry {
                key: Arc::new(key),
                tenant: Arc::new(Tenant::new(tenant)),
            }),
            tenant: Some(tenant.to_owned()),
            read_at,
        }
    }

    #[test]
    fn expire_all_keeps_verified_keys_due_for_a_refresh() {
        let c = Cache::new(Duration::from_millis(900), Duration::from_secs(300));
        let now = Instant::now();
        c.put("aaaaaaaaaaaa", cached("aaaaaaaaaaaa", "acme", now));
        let absent = Cached {
            entry: None,
            tenant: None,
            read_at: now,
        };
        c.put("bbbbbbbbbbbb", absent);
        c.expire_all();
        let kept = c.get("aaaaaaaaaaaa").expect("a verified key is kept");
        assert!(
            Instant::now().saturating_duration_since(kept.read_at) >= Duration::from_millis(900)
        );
        assert!(c.get("bbbbbbbbbbbb").is_none());
    }

    #[test]
    fn invalidation_drops_a_kid_or_a_tenants_kids() {
        let c = Cache::new(Duration::from_secs(1), Duration::from_secs(300));
        let now = Instant::now();
        c.put("aaaaaaaaaaaa", cached("aaaaaaaaaaaa", "acme", now));
        c.put("bbbbbbbbbbbb", cached("bbbbbbbbbbbb", "acme", now));
        c.put("cccccccccccc", cached("cccccccccccc", "other", now));
        c.invalidate("k:aaaaaaaaaaaa");
        assert!(c.get("aaaaaaaaaaaa").is_none() && c.get("bbbbbbbbbbbb").is_some());
        c.invalidate("t:acme");
        assert!(c.get("bbbbbbbbbbbb").is_none() && c.get("cccccccccccc").is_some());
        c.invalidate("garbage");
        assert!(c.get("cccccccccccc").is_none());
    }

    #[test]
    fn a_flood_of_unknown_kids_is_swept() {
        let c = Cache::new(Duration::from_millis(1), Duration::from_secs(300));
        let old = Instant::now();
        c.put("aaaaaaaaaaaa", cached("aaaaaaaaaaaa", "acme", old));
        std::thread::sleep(Duration::from_millis(5));
        for i in 0..3 * FIRST_SWEEP {
            let absent = Cached {
                entry: None,
                tenant: None,
                read_at: old,
            };
            c.put(&format!("{i:012}"), absent);
        }
        let len = c.map.read().unwrap().len();
        assert!(len < FIRST_SWEEP, "{len}");
        // A verified key survives until the stale limit.
        assert!(c.get("aaaaaaaaaaaa").is_some());
    }
}
