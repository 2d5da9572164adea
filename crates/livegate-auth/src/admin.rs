//! The write side of a key store: what the admin API does to tenants and
//! keys. [`MemoryStore`](crate::MemoryStore) implements it for the embedded
//! default and tests; a shared store (Redis) implements it so that every
//! replica sees the same tenants and keys.
//!
//! Keys arrive here already generated and hashed (the admin API holds the
//! pepper): a store never sees a plaintext secret. Every operation that
//! changes several records (a rotation: the new key, and the old key's
//! shortened expiry) must be atomic in the store: all or nothing.

use livegate_core::Timestamp;
use livegate_payload::ImageOverrides;
use serde::{Deserialize, Serialize};

use crate::store::{BoxFuture, KeyRecord, StoreError, Tenant};

/// How long a key issuance's request id is remembered.
pub const REQUEST_ID_RETENTION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Why an admin operation was refused. Messages hold no secret.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no such tenant")]
    TenantNotFound,
    #[error("a tenant with this id already exists")]
    TenantExists,
    #[error("no such key")]
    KeyNotFound,
    #[error("the key is revoked")]
    KeyRevoked,
    /// A key was already issued for this request id: its id (never a secret).
    #[error("a key was already issued for this request id")]
    AlreadyIssued(crate::KeyId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Changes to a tenant's name and settings; unset fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct TenantUpdate {
    pub name: Option<String>,
    pub rate_per_second: Option<f64>,
    pub burst: Option<u32>,
    pub monthly_quota: Option<u64>,
    pub images: Option<ImageOverrides>,
    pub protection: Option<livegate_protect::ProtectionOverrides>,
}

impl TenantUpdate {
    /// Applies the update to `t`.
    pub fn apply(&self, t: &mut Tenant, at: Timestamp) {
        if let Some(name) = &self.name {
            t.name = Some(name.clone());
        }
        let s = &mut t.settings;
        if let Some(v) = self.rate_per_second {
            s.rate_per_second = Some(v);
        }
        if let Some(v) = self.burst {
            s.burst = Some(v);
        }
        if let Some(v) = self.monthly_quota {
            s.monthly_quota = Some(v);
        }
        if let Some(v) = self.images {
            s.images = v;
        }
        if let Some(v) = self.protection {
            s.protection = v;
        }
        t.updated_at = Some(at);
    }
}

/// The admin operations on a store.
pub trait KeyAdmin: Send + Sync + 'static {
    /// Creates `tenant`; [`AdminError::TenantExists`] when its id is taken.
    fn create_tenant(&self, tenant: Tenant) -> BoxFuture<'_, Result<Tenant, AdminError>>;

    /// Every tenant, ordered by id.
    fn tenants(&self) -> BoxFuture<'_, Result<Vec<Tenant>, AdminError>>;

    fn tenant(&self, id: &str) -> BoxFuture<'_, Result<Tenant, AdminError>>;

    fn update_tenant(
        &self,
        id: &str,
        update: TenantUpdate,
        at: Timestamp,
    ) -> BoxFuture<'_, Result<Tenant, AdminError>>;

    fn set_tenant_disabled(
        &self,
        id: &str,
        disabled: bool,
        at: Timestamp,
    ) -> BoxFuture<'_, Result<Tenant, AdminError>>;

    /// Stores a new key of an existing tenant.
    fn add_key(&self, key: KeyRecord) -> BoxFuture<'_, Result<KeyRecord, AdminError>>;

    /// [`KeyAdmin::add_key`] at most once per `(tenant, request_id)` within
    /// [`REQUEST_ID_RETENTION`]: when a key was already stored for it,
    /// nothing is written and [`AdminError::AlreadyIssued`] names that key.
    /// The check and the write are one atomic step.
    fn add_key_once(
        &self,
        key: KeyRecord,
        request_id: &str,
    ) -> BoxFuture<'_, Result<KeyRecord, AdminError>>;

    /// A tenant's keys, ordered by id.
    fn keys(&self, tenant: &str) -> BoxFuture<'_, Result<Vec<KeyRecord>, AdminError>>;

    /// Marks a key revoked (idempotent: revoking a revoked key returns it).
    fn revoke_key(&self, kid: &str) -> BoxFuture<'_, Result<KeyRecord, AdminError>>;

    /// Atomically stores `new` (whose `rotated_from` names `kid`) and makes
    /// the old key expire at `old_expires_at` (or earlier, if it already
    /// did). [`AdminError::KeyRevoked`] for a revoked old key. Returns the
    /// old key as it is now.
    fn rotate_key(
        &self,
        kid: &str,
        new: KeyRecord,
        old_expires_at: Timestamp,
    ) -> BoxFuture<'_, Result<KeyRecord, AdminError>>;
}
