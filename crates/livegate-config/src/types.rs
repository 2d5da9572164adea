use std::net::SocketAddr;
use std::path::PathBuf;

use livegate_auth::{KeyHash, KeyId};
use livegate_core::{Secret, Timestamp};
use livegate_payload::{ImageOverrides, ImagePolicy};
use livegate_protect::{ProtectionOverrides, ProtectionPolicy};
use serde::{Deserialize, Serialize};

pub use livegate_audit::{AuditSettings, SinkKind};
pub use livegate_core::server::{MAX_BLOCKING_THREADS, ServerSettings};
pub use livegate_ratelimit::RateLimitSettings;
pub use livegate_redis::{FailMode, RedisSettings};
pub use livegate_stub::SimulatorSettings;
pub use livegate_telemetry::{LogFormat, LogSettings};
pub use livegate_upstream::UpstreamSettings;

/// The whole configuration file: each section is the settings type of the
/// crate that uses it, deserialized straight from the file; this crate
/// composes them, applies the environment's overrides and checks fields
/// against each other.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerSettings,
    pub vendor: UpstreamSettings,
    pub auth: AuthConfig,
    /// The shared store of tenants and keys, limits and protection state.
    pub redis: RedisSettings,
    /// Rate limits: defaults and how the limiter runs.
    pub ratelimit: RateLimitSettings,
    /// The operations listener (admin API).
    pub ops: OpsConfig,
    /// The admin API's token.
    pub admin: AdminConfig,
    /// `[images]`: the deployment's image policy (tenants may override it).
    pub images: ImagePolicy,
    /// `[protection]`: liveness-aware protection (replay detection,
    /// metadata removal, score decision, idempotency); tenants may override
    /// the per-tenant fields.
    pub protection: ProtectionPolicy,
    pub simulator: SimulatorSettings,
    /// The audit trail: one record per liveness request.
    pub audit: AuditSettings,
    pub log: LogSettings,
    /// Bootstrap tenants and their key hashes (never plaintext keys).
    pub tenants: Vec<TenantConfig>,
}

/// What the gateway answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Nothing configured: the built-in simulator and in-memory stores.
    Embedded,
    /// `simulator.enabled` with production settings: explicitly the
    /// simulator.
    Simulator,
    /// The configured liveness vendor.
    Vendor,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Simulator => "simulator",
            Self::Vendor => "vendor",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operations listener: the admin API; never on the public listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    pub listen: SocketAddr,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

/// The admin API's bearer token. Without one the admin routes are off
/// (the embedded default makes a development token and prints it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
}

/// Tenant-key verification.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The HMAC pepper keys are hashed with (at least 16 bytes).
    pub pepper: Option<Secret>,
    pub pepper_file: Option<PathBuf>,
}

/// A bootstrap tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// 1–64 chars of `[a-z0-9_-]`.
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    /// Changes to `[images]` for this tenant; unset fields inherit.
    #[serde(default)]
    pub images: ImageOverrides,
    /// Changes to `[protection]` for this tenant; unset fields inherit.
    #[serde(default)]
    pub protection: ProtectionOverrides,
    /// Requests per second (GCRA rate); unset: `[ratelimit]`'s default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// Requests that may come at once above the rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Requests per calendar month (UTC); unset: no quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_quota: Option<u64>,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
}

/// A tenant key, as its public id and keyed hash (from `livegate keys new`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub id: KeyId,
    /// HMAC-SHA-256 of the key under the pepper, 64 hex chars.
    pub hash: KeyHash,
    /// RFC 3339 time, e.g. `2027-01-31T00:00:00Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub revoked: bool,
}
