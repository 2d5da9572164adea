//! Where tenants and key records live, seen from the request path.
//!
//! [`KeyStore`] is the read side the authenticator needs: one lookup by kid,
//! one by tenant id. Writes (issue, revoke, disable) differ too much between
//! backends to share a trait yet; [`MemoryStore`] has its own inherent ones.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{PoisonError, RwLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::hash::KeyHash;
use crate::key::KeyId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub disabled: bool,
}

impl Tenant {
    /// An enabled tenant with no display name.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: None,
            disabled: false,
        }
    }
}

/// What is stored per key: never the secret, only its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub kid: KeyId,
    pub tenant_id: String,
    pub hash: KeyHash,
    /// Serialized as an RFC 3339 UTC timestamp, readable in a Redis dump.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<SystemTime>,
    #[serde(default)]
    pub revoked: bool,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the request path needs; a Redis-backed store implements this too.
///
/// Boxed futures keep the trait object-safe so the stack can hold an
/// `Arc<dyn KeyStore>` chosen at start-up from configuration.
pub trait KeyStore: Send + Sync + 'static {
    fn key(&self, kid: &str) -> BoxFuture<'_, Result<Option<KeyRecord>, StoreError>>;
    fn tenant(&self, id: &str) -> BoxFuture<'_, Result<Option<Tenant>, StoreError>>;
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
    tenants: RwLock<HashMap<String, Tenant>>,
    keys: RwLock<HashMap<String, KeyRecord>>,
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
        write!(self.tenants).insert(tenant.id.clone(), tenant);
    }

    /// Inserts or replaces the key with this kid.
    pub fn put_key(&self, key: KeyRecord) {
        write!(self.keys).insert(key.kid.as_str().to_owned(), key);
    }

    /// Marks a key revoked; `false` if there is no such key.
    pub fn revoke(&self, kid: &str) -> bool {
        match write!(self.keys).get_mut(kid) {
            Some(k) => {
                k.revoked = true;
                true
            }
            None => false,
        }
    }

    /// `false` if there is no such tenant.
    pub fn set_disabled(&self, tenant: &str, disabled: bool) -> bool {
        match write!(self.tenants).get_mut(tenant) {
            Some(t) => {
                t.disabled = disabled;
                true
            }
            None => false,
        }
    }
}

impl KeyStore for MemoryStore {
    fn key(&self, kid: &str) -> BoxFuture<'_, Result<Option<KeyRecord>, StoreError>> {
        let found = read!(self.keys).get(kid).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn tenant(&self, id: &str) -> BoxFuture<'_, Result<Option<Tenant>, StoreError>> {
        let found = read!(self.tenants).get(id).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }
}

mod rfc3339_opt {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(&humantime::format_rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_rfc3339(&s).map_err(D::Error::custom))
            .transpose()
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

    #[test]
    fn put_get_revoke_disable() {
        let store = MemoryStore::new();
        store.put_tenant(Tenant::new("acme"));
        store.put_key(record("aaaaaaaaaaaa", "acme"));

        let dyn_store: Arc<dyn KeyStore> = Arc::new(MemoryStore::new());
        assert!(
            now_or_never(dyn_store.key("aaaaaaaaaaaa"))
                .unwrap()
                .is_none()
        );

        let k = now_or_never(store.key("aaaaaaaaaaaa")).unwrap().unwrap();
        assert!(!k.revoked);
        assert!(now_or_never(store.key("bbbbbbbbbbbb")).unwrap().is_none());

        assert!(store.revoke("aaaaaaaaaaaa"));
        assert!(!store.revoke("bbbbbbbbbbbb"));
        assert!(
            now_or_never(store.key("aaaaaaaaaaaa"))
                .unwrap()
                .unwrap()
                .revoked
        );

        assert!(
            !now_or_never(store.tenant("acme"))
                .unwrap()
                .unwrap()
                .disabled
        );
        assert!(store.set_disabled("acme", true));
        assert!(
            now_or_never(store.tenant("acme"))
                .unwrap()
                .unwrap()
                .disabled
        );
        assert!(store.set_disabled("acme", false));
        assert!(
            !now_or_never(store.tenant("acme"))
                .unwrap()
                .unwrap()
                .disabled
        );
        assert!(!store.set_disabled("nobody", true));
        assert!(now_or_never(store.tenant("nobody")).unwrap().is_none());
    }

    #[test]
    fn put_replaces() {
        let store = MemoryStore::new();
        store.put_key(record("aaaaaaaaaaaa", "acme"));
        store.put_key(record("aaaaaaaaaaaa", "other"));
        let k = now_or_never(store.key("aaaaaaaaaaaa")).unwrap().unwrap();
        assert_eq!(k.tenant_id, "other");
    }

    #[test]
    fn record_serde_round_trip() {
        let mut r = record("aaaaaaaaaaaa", "acme");
        r.expires_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
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
        assert_eq!((m.expires_at, m.revoked), (None, false));

        let bad_kid = minimal.replace("aaaaaaaaaaaa", "AAAA");
        assert!(serde_json::from_str::<KeyRecord>(&bad_kid).is_err());
        let bad_time = json.replace("2027-01-15T08:00:00Z", "tomorrow");
        assert!(serde_json::from_str::<KeyRecord>(&bad_time).is_err());

        let t: Tenant = serde_json::from_str(r#"{"id":"acme"}"#).unwrap();
        assert_eq!(t, Tenant::new("acme"));
    }
}
