//! The in-memory store: the embedded default, tests, and bootstrap from
//! configuration. Implements both sides: [`KeyStore`] for the request path
//! and [`KeyAdmin`] for the admin API.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use livegate_core::Timestamp;

use crate::admin::{AdminError, KeyAdmin, REQUEST_ID_RETENTION, TenantUpdate};
use crate::key::KeyId;
use crate::store::{BoxFuture, KeyEntry, KeyRecord, KeyStore, StoreError, StoreHealth, Tenant};

/// In-memory store: the embedded default, tests, and bootstrap from config.
///
/// Per-replica only, so a revoke here reaches other replicas only through a
/// shared backend.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    keys: RwLock<HashMap<String, Arc<KeyRecord>>>,
    /// `(tenant, request id)` of key issuances: the key and when.
    issued: std::sync::Mutex<HashMap<(String, String), (KeyId, std::time::Instant)>>,
}

// Every write below is a single map operation, so a panic in another thread
// holding the lock cannot leave the map half-updated: ignoring poison is safe
// and keeps one panic from failing every later request.
macro_rules! read {
    ($lock:expr) => {
        $lock.read().unwrap_or_else(PoisonError::into_inner)
    };
}
macro_rules! write {
    ($lock:expr) => {
        $lock.write().unwrap_or_else(PoisonError::into_inner)
    };
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces the tenant with this id.
    pub fn put_tenant(&self, tenant: Tenant) {
        write!(self.tenants).insert(tenant.id.clone(), Arc::new(tenant));
    }

    /// Inserts or replaces the key with this kid.
    pub fn put_key(&self, key: KeyRecord) {
        write!(self.keys).insert(key.kid.as_str().to_owned(), Arc::new(key));
    }

    /// Marks a key revoked; `false` if there is no such key.
    pub fn revoke(&self, kid: &str) -> bool {
        match write!(self.keys).get_mut(kid) {
            Some(k) => {
                Arc::make_mut(k).revoked = true;
                true
            }
            None => false,
        }
    }

    /// `false` if there is no such tenant.
    pub fn set_disabled(&self, tenant: &str, disabled: bool) -> bool {
        match write!(self.tenants).get_mut(tenant) {
            Some(t) => {
                Arc::make_mut(t).disabled = disabled;
                true
            }
            None => false,
        }
    }
}

impl KeyAdmin for MemoryStore {
    fn create_tenant(&self, tenant: Tenant) -> BoxFuture<'_, Result<Tenant, AdminError>> {
        let mut tenants = write!(self.tenants);
        let result = if tenants.contains_key(&tenant.id) {
            Err(AdminError::TenantExists)
        } else {
            tenants.insert(tenant.id.clone(), Arc::new(tenant.clone()));
            Ok(tenant)
        };
        Box::pin(std::future::ready(result))
    }

    fn tenants(&self) -> BoxFuture<'_, Result<Vec<Tenant>, AdminError>> {
        let mut all: Vec<Tenant> = read!(self.tenants)
            .values()
            .map(|t| (**t).clone())
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Box::pin(std::future::ready(Ok(all)))
    }

    fn tenant(&self, id: &str) -> BoxFuture<'_, Result<Tenant, AdminError>> {
        let found = read!(self.tenants).get(id).map(|t| (**t).clone());
        Box::pin(std::future::ready(found.ok_or(AdminError::TenantNotFound)))
    }

    fn update_tenant(
        &self,
        id: &str,
        update: TenantUpdate,
        at: Timestamp,
    ) -> BoxFuture<'_, Result<Tenant, AdminError>> {
        let result = match write!(self.tenants).get_mut(id) {
            Some(t) => {
                let t = Arc::make_mut(t);
                update.apply(t, at);
                Ok(t.clone())
            }
            None => Err(AdminError::TenantNotFound),
        };
        Box::pin(std::future::ready(result))
    }

    fn set_tenant_disabled(
        &self,
        id: &str,
        disabled: bool,
        at: Timestamp,
    ) -> BoxFuture<'_, Result<Tenant, AdminError>> {
        let result = match write!(self.tenants).get_mut(id) {
            Some(t) => {
                let t = Arc::make_mut(t);
                t.disabled = disabled;
                t.updated_at = Some(at);
                Ok(t.clone())
            }
            None => Err(AdminError::TenantNotFound),
        };
        Box::pin(std::future::ready(result))
    }

    fn add_key(&self, key: KeyRecord) -> BoxFuture<'_, Result<KeyRecord, AdminError>> {
        let result = if read!(self.tenants).contains_key(&key.tenant_id) {
            write!(self.keys).insert(key.kid.as_str().to_owned(), Arc::new(key.clone()));
            Ok(key)
        } else {
            Err(AdminError::TenantNotFound)
        };
        Box::pin(std::future::ready(result))
    }

    fn add_key_once(
        &self,
        key: KeyRecord,
        request_id: &str,
    ) -> BoxFuture<'_, Result<KeyRecord, AdminError>> {
        let now = std::time::Instant::now();
        let mut issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        issued.retain(|_, (_, at)| now.duration_since(*at) < REQUEST_ID_RETENTION);
        let slot = (key.tenant_id.clone(), request_id.to_owned());
        if let Some((kid, _)) = issued.get(&slot) {
            let kid = kid.clone();
            return Box::pin(std::future::ready(Err(AdminError::AlreadyIssued(kid))));
        }
        let kid = key.kid.clone();
        let result = if read!(self.tenants).contains_key(&key.tenant_id) {
            write!(self.keys).insert(key.kid.as_str().to_owned(), Arc::new(key.clone()));
            issued.insert(slot, (kid, now));
            Ok(key)
        } else {
            Err(AdminError::TenantNotFound)
        };
        Box::pin(std::future::ready(result))
    }

    fn keys(&self, tenant: &str) -> BoxFuture<'_, Result<Vec<KeyRecord>, AdminError>> {
        let result = if read!(self.tenants).contains_key(tenant) {
            let mut keys: Vec<KeyRecord> = read!(self.keys)
                .values()
                .filter(|k| k.tenant_id == tenant)
                .map(|k| (**k).clone())
                .collect();
            keys.sort_by(|a, b| a.kid.cmp(&b.kid));
            Ok(keys)
        } else {
            Err(AdminError::TenantNotFound)
        };
        Box::pin(std::future::ready(result))
    }

    fn revoke_key(&self, kid: &str) -> BoxFuture<'_, Result<KeyRecord, AdminError>> {
        let result = match write!(self.keys).get_mut(kid) {
            Some(k) => {
                let k = Arc::make_mut(k);
                k.revoked = true;
                Ok(k.clone())
            }
            None => Err(AdminError::KeyNotFound),
        };
        Box::pin(std::future::ready(result))
    }

    fn rotate_key(
        &self,
        kid: &str,
        new: KeyRecord,
        old_expires_at: Timestamp,
    ) -> BoxFuture<'_, Result<KeyRecord, AdminError>> {
        // One lock over both writes: nobody sees the new key without the
        // old one's shortened expiry.
        let mut keys = write!(self.keys);
        let result = match keys.get_mut(kid) {
            None => Err(AdminError::KeyNotFound),
            Some(k) if k.revoked => Err(AdminError::KeyRevoked),
            Some(k) => {
                let k = Arc::make_mut(k);
                k.expires_at = Some(match k.expires_at {
                    Some(e) if e < old_expires_at => e,
                    _ => old_expires_at,
                });
                let old = k.clone();
                keys.insert(new.kid.as_str().to_owned(), Arc::new(new));
                Ok(old)
            }
        };
        Box::pin(std::future::ready(result))
    }
}

impl KeyStore for MemoryStore {
    fn lookup(&self, kid: &str) -> BoxFuture<'_, Result<Option<KeyEntry>, StoreError>> {
        let key = read!(self.keys).get(kid).cloned();
        let entry = key.and_then(|key| {
            let tenant = read!(self.tenants).get(&key.tenant_id).cloned()?;
            Some(KeyEntry { key, tenant })
        });
        Box::pin(std::future::ready(Ok(entry)))
    }

    fn health(&self) -> BoxFuture<'_, StoreHealth> {
        Box::pin(std::future::ready(StoreHealth {
            backend: "memory",
            ok: true,
            detail: None,
        }))
    }

    fn touch(&self, kid: &str, at: Timestamp) -> BoxFuture<'_, Result<(), StoreError>> {
        if let Some(k) = write!(self.keys).get_mut(kid) {
            if k.last_used_at.is_none_or(|t| t < at) {
                // A copy if the record is shared: a reader's record does not
                // change under it.
                Arc::make_mut(k).last_used_at = Some(at);
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::hash::{Pepper, hash_key};

    fn record(kid: &str, tenant: &str) -> KeyRecord {
        let pepper = Pepper::new("0123456789abcdef").unwrap();
        KeyRecord {
            kid: kid.parse().unwrap(),
            tenant_id: tenant.to_owned(),
            hash: hash_key(&pepper, kid, "s"),
            expires_at: None,
            revoked: false,
            created_at: None,
            rotated_from: None,
            last_used_at: None,
        }
    }

    fn now_or_never<T>(f: BoxFuture<'_, T>) -> T {
        // MemoryStore futures are ready on first poll; a runtime would hide a
        // regression that made them wait.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut f = f;
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("memory store future was not ready"),
        }
    }

    fn lookup(store: &dyn KeyStore, kid: &str) -> Option<KeyEntry> {
        now_or_never(store.lookup(kid)).unwrap()
    }

    #[test]
    fn one_lookup_gives_key_and_tenant() {
        let store = MemoryStore::new();
        store.put_tenant(Tenant::new("acme"));
        store.put_key(record("aaaaaaaaaaaa", "acme"));
        store.put_key(record("orphan000000", "gone"));

        let e = lookup(&store, "aaaaaaaaaaaa").unwrap();
        assert_eq!(
            (e.key.kid.as_str(), e.tenant.id.as_str()),
            ("aaaaaaaaaaaa", "acme")
        );
        assert!(lookup(&store, "bbbbbbbbbbbb").is_none());
        // A key whose tenant is gone is no credential.
        assert!(lookup(&store, "orphan000000").is_none());
        // Hits share the stored records rather than copying them.
        let again = lookup(&store, "aaaaaaaaaaaa").unwrap();
        assert!(Arc::ptr_eq(&e.key, &again.key) && Arc::ptr_eq(&e.tenant, &again.tenant));

        let health = now_or_never(store.health());
        assert_eq!((health.backend, health.ok), ("memory", true));
    }

    #[test]
    fn revoke_and_disable() {
        let store = MemoryStore::new();
        store.put_tenant(Tenant::new("acme"));
        store.put_key(record("aaaaaaaaaaaa", "acme"));
        let before = lookup(&store, "aaaaaaaaaaaa").unwrap();

        assert!(store.revoke("aaaaaaaaaaaa"));
        assert!(!store.revoke("bbbbbbbbbbbb"));
        assert!(lookup(&store, "aaaaaaaaaaaa").unwrap().key.revoked);
        // A record already handed out is not changed under its reader.
        assert!(!before.key.revoked);

        assert!(store.set_disabled("acme", true));
        assert!(lookup(&store, "aaaaaaaaaaaa").unwrap().tenant.disabled);
        assert!(store.set_disabled("acme", false));
        assert!(!lookup(&store, "aaaaaaaaaaaa").unwrap().tenant.disabled);
        assert!(!store.set_disabled("nobody", true));
    }

    #[test]
    fn put_replaces() {
        let store = MemoryStore::new();
        store.put_tenant(Tenant::new("acme"));
        store.put_tenant(Tenant::new("other"));
        store.put_key(record("aaaaaaaaaaaa", "acme"));
        store.put_key(record("aaaaaaaaaaaa", "other"));
        let e = lookup(&store, "aaaaaaaaaaaa").unwrap();
        assert_eq!(e.key.tenant_id, "other");
    }

    #[test]
    fn touch_records_the_latest_use_only() {
        let at = |s: u64| Timestamp(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        let store = MemoryStore::new();
        store.put_tenant(Tenant::new("acme"));
        store.put_key(record("aaaaaaaaaaaa", "acme"));
        let before = lookup(&store, "aaaaaaaaaaaa").unwrap();
        assert_eq!(before.key.last_used_at, None);

        now_or_never(store.touch("aaaaaaaaaaaa", at(1_800_000_000))).unwrap();
        let after = lookup(&store, "aaaaaaaaaaaa").unwrap();
        assert_eq!(after.key.last_used_at, Some(at(1_800_000_000)));
        // Only that field changed, and not under an earlier reader.
        assert_eq!(
            KeyRecord {
                last_used_at: None,
                ..(*after.key).clone()
            },
            *before.key
        );
        assert_eq!(before.key.last_used_at, None);

        // An older or equal time never moves it back.
        now_or_never(store.touch("aaaaaaaaaaaa", at(1_700_000_000))).unwrap();
        now_or_never(store.touch("aaaaaaaaaaaa", at(1_800_000_000))).unwrap();
        let same = lookup(&store, "aaaaaaaaaaaa").unwrap();
        assert!(Arc::ptr_eq(&same.key, &after.key), "no write at all");
        now_or_never(store.touch("aaaaaaaaaaaa", at(1_800_000_060))).unwrap();
        assert_eq!(
            lookup(&store, "aaaaaaaaaaaa").unwrap().key.last_used_at,
            Some(at(1_800_000_060))
        );

        // An unknown kid is no error and creates nothing.
        now_or_never(store.touch("bbbbbbbbbbbb", at(1_800_000_000))).unwrap();
        assert!(lookup(&store, "bbbbbbbbbbbb").is_none());
    }
}
