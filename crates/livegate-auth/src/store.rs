//! Where tenants and key records live, seen from the request path.
//!
//! [`KeyStore`] is the read side the authenticator needs: **one** lookup by
//! key id that returns the key record together with its tenant (one round
//! trip for a remote store), and a health check for `/readyz`. Records are
//! shared (`Arc`), so a hit copies nothing. Writes are the admin API's
//! ([`KeyAdmin`](crate::KeyAdmin)); the stores are the in-memory
//! [`MemoryStore`](crate::MemoryStore) and the shared
//! [`RedisStore`](crate::RedisStore). This module imports neither.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use livegate_core::Timestamp;
use livegate_payload::ImageOverrides;
use serde::{Deserialize, Serialize};

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
    /// Requests per second (the GCRA rate); none: the deployment's
    /// `ratelimit.default_rate_per_second`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// The burst; none: the deployment's `ratelimit.default_burst`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Requests per calendar month (UTC); none: no quota.
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::hash::{Pepper, hash_key};

    fn record(kid: &str, tenant: &str) -> KeyRecord {
        let pepper = Pepper::new("0123456789abcdef").unwrap();
        KeyRecord::new(kid.parse().unwrap(), tenant, hash_key(&pepper, kid, "s"))
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
