//! Where tenants and key records live, seen from the request path.
//!
//! [`KeyStore`] is the read side the authenticator needs: **one** lookup by
//! key id that returns the key record together with its tenant (one round
//! trip for a remote store), and a health check for `/readyz`. Records are
//! shared (`Arc`), so a hit copies nothing. Writes (issue, revoke, disable)
//! differ too much between backends to share a trait yet; [`MemoryStore`]
//! has its own inherent ones.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};

use livegate_core::Timestamp;
use livegate_payload::ImageOverrides;
use serde::{Deserialize, Serialize};

use crate::admin::{AdminError, TenantUpdate};
use crate::hash::KeyHash;
use crate::key::KeyId;

/// A tenant: who the keys belong to, and the settings its requests get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub settings: TenantSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

impl Tenant {
    /// An enabled tenant with no display name and the deployment's defaults.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: None,
            disabled: false,
            settings: TenantSettings::default(),
            created_at: None,
            updated_at: None,
        }
    }
}

/// What a tenant's requests get, where it differs from the deployment's
/// defaults. Kept on the tenant so tenants created at run time have
/// somewhere to keep it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantSettings {
    /// Changes to the deployment's image policy.
    pub images: ImageOverrides,
    /// Changes to the deployment's liveness-aware protection.
    pub protection: livegate_protect::ProtectionOverrides,
    /// Reserved for the rate-limit work: requests per second (GCRA rate).
    /// Not enforced yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// Reserved for the rate-limit work: burst size. Not enforced yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Reserved for the rate-limit work: requests per calendar month. Not
    /// enforced yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_quota: Option<u64>,
}

/// What is stored per key: never the secret, only its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub kid: KeyId,
    pub tenant_id: String,
    pub hash: KeyHash,
    /// Serialized as an RFC 3339 UTC timestamp, readable in a Redis dump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub revoked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// The key this one replaced by rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_from: Option<KeyId>,
    /// When the key last authenticated a request, to within about a
    /// minute: informational, written off the request path by
    /// [`KeyStore::touch`], never consulted for a decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
}

impl KeyRecord {
    /// A valid, unexpiring key of `tenant_id` with this id and hash.
    pub fn new(kid: KeyId, tenant_id: impl Into<String>, hash: KeyHash) -> Self {
        Self {
            kid,
            tenant_id: tenant_id.into(),
            hash,
            expires_at: None,
            revoked: false,
            created_at: None,
            rotated_from: None,
            last_used_at: None,
        }
    }
}

/// A key with its tenant, as one lookup returns them.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub key: Arc<KeyRecord>,
    pub tenant: Arc<Tenant>,
}

/// How a store is doing, for `/readyz` and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreHealth {
    /// `memory`, `redis`, …
    pub backend: &'static str,
    pub ok: bool,
    /// Why not ok (never a secret or a URL with credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the request path needs; a Redis-backed store implements this too.
///
/// Boxed futures keep the trait object-safe so the stack can hold an
/// `Arc<dyn KeyStore>` chosen at start-up from configuration.
pub trait KeyStore: Send + Sync + 'static {
    /// The key with this id and its tenant, in one lookup. `None` when
    /// either is missing: a key whose tenant is gone is no credential.
    fn lookup(&self, kid: &str) -> BoxFuture<'_, Result<Option<KeyEntry>, StoreError>>;

    /// Whether the store can answer now.
    fn health(&self) -> BoxFuture<'_, StoreHealth>;

    /// Records that the key `kid` authenticated a request at `at`: sets its
    /// [`KeyRecord::last_used_at`], unless the stored value is already as
    /// recent. Only that field changes, and nothing else is told: it is
    /// informational, so a touch must not drop caches or publish
    /// invalidations. An unknown kid is no error (it may have just gone).
    ///
    /// Called off the request path (the [`Authenticator`](crate::Authenticator)
    /// spawns it, at most once a minute per key and replica).
    fn touch(&self, kid: &str, at: Timestamp) -> BoxFuture<'_, Result<(), StoreError>>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key store unavailable: {0}")]
    Unavailable(String),
}

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

impl crate::admin::KeyAdmin for MemoryStore {
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
        issued.retain(|_, (_, at)| now.duration_since(*at) < crate::admin::REQUEST_ID_RETENTION);
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

    #[test]
    fn record_serde_round_trip() {
        let mut r = record("aaaaaaaaaaaa", "acme");
        r.expires_at = Some(Timestamp(
            std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        ));
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.contains(r#""expires_at":"2027-01-15T08:00:00Z""#),
            "{json}"
        );
        assert!(json.contains(&format!(r#""hash":"{}""#, r.hash)), "{json}");
        assert_eq!(serde_json::from_str::<KeyRecord>(&json).unwrap(), r);

        let minimal = format!(
            r#"{{"kid":"aaaaaaaaaaaa","tenant_id":"acme","hash":"{}"}}"#,
            r.hash
        );
        let m: KeyRecord = serde_json::from_str(&minimal).unwrap();
        assert_eq!(
            (m.expires_at, m.revoked, m.last_used_at),
            (None, false, None)
        );
        assert!(
            !json.contains("last_used_at"),
            "absent when never used: {json}"
        );
        let used = KeyRecord {
            last_used_at: r.expires_at,
            ..r.clone()
        };
        let used_json = serde_json::to_string(&used).unwrap();
        assert!(
            used_json.contains(r#""last_used_at":"2027-01-15T08:00:00Z""#),
            "{used_json}"
        );
        assert_eq!(serde_json::from_str::<KeyRecord>(&used_json).unwrap(), used);

        let bad_kid = minimal.replace("aaaaaaaaaaaa", "AAAA");
        assert!(serde_json::from_str::<KeyRecord>(&bad_kid).is_err());
        let bad_time = json.replace("2027-01-15T08:00:00Z", "tomorrow");
        assert!(serde_json::from_str::<KeyRecord>(&bad_time).is_err());

        let t: Tenant = serde_json::from_str(r#"{"id":"acme"}"#).unwrap();
        assert_eq!(t, Tenant::new("acme"));
        let t: Tenant = serde_json::from_str(
            r#"{"id":"acme","settings":{"images":{"min_width":640},"burst":5}}"#,
        )
        .unwrap();
        assert_eq!(t.settings.images.min_width, Some(640));
        assert_eq!(t.settings.burst, Some(5));
    }
}
