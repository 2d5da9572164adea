use std::net::SocketAddr;
use std::path::PathBuf;

pub use livegate_admin::Scope as AdminScope;
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

/// The operations listener: `/metrics` and the admin API; never on the
/// public listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    pub listen: SocketAddr,
    /// When set, `GET /metrics` needs `Authorization: Bearer <metrics_token>`.
    pub metrics_token: Option<Secret>,
    pub metrics_token_file: Option<PathBuf>,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            metrics_token: None,
            metrics_token_file: None,
        }
    }
}

/// The admin API's bearer tokens. Without any the admin routes are off
/// (the embedded default makes a development token and prints it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The token of scope `admin`.
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    /// More tokens, each with its own scopes (`[[admin.tokens]]`).
    pub tokens: Vec<AdminTokenConfig>,
}

/// One `[[admin.tokens]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenConfig {
    /// Names the token in admin audit events and errors (never its value).
    pub name: String,
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Any of `read`, `keys`, `admin`.
    pub scopes: Vec<AdminScope>,
    /// Limits the `keys` scope to these tenants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<Vec<String>>,
}

/// Shortest admin or metrics token, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;

impl AdminConfig {
    /// Whether any admin token is configured (inline or as a file).
    pub fn any_token(&self) -> bool {
        self.token.is_some() || self.token_file.is_some() || !self.tokens.is_empty()
    }

    /// Drops the tokens' values once the admin API holds their digests.
    pub fn forget_secrets(&mut self) {
        self.token = None;
        for t in &mut self.tokens {
            t.token = None;
        }
    }

    pub(crate) fn resolve_secrets(&mut self, problems: &mut Vec<String>) {
        crate::load::read_secret(&mut self.token, &self.token_file, "admin.token", problems);
        for (i, t) in self.tokens.iter_mut().enumerate() {
            let at = format!("admin.tokens[{i}].token");
            crate::load::read_secret(&mut t.token, &t.token_file, &at, problems);
        }
    }

    /// Each token's own form, and that no two are the same.
    pub(crate) fn validate_into(&self, p: &mut Vec<String>) {
        if self
            .token
            .as_ref()
            .is_some_and(|t| t.expose().len() < MIN_TOKEN_LEN)
        {
            p.push(format!(
                "admin.token must be at least {MIN_TOKEN_LEN} bytes"
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut values: Vec<&str> = self.token.iter().map(Secret::expose).collect();
        for (i, t) in self.tokens.iter().enumerate() {
            let at = format!("admin.tokens[{i}]");
            let name_ok = (1..=64).contains(&t.name.len())
                && t.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !name_ok {
                p.push(format!(
                    "{at}.name must be 1 to 64 letters, digits, '-', '_' or '.'"
                ));
            } else if !names.insert(t.name.as_str()) {
                p.push(format!("{at}.name `{}` is used twice", t.name));
            }
            match &t.token {
                None if t.token_file.is_none() => {
                    p.push(format!("{at} needs token or token_file"));
                }
                Some(v) if v.expose().len() < MIN_TOKEN_LEN => {
                    p.push(format!("{at}.token must be at least {MIN_TOKEN_LEN} bytes"));
                }
                Some(v) if values.contains(&v.expose()) => {
                    p.push(format!(
                        "{at}.token is the same as another admin token: each token must be its own"
                    ));
                }
                Some(v) => values.push(v.expose()),
                None => {}
            }
            if t.scopes.is_empty() {
                p.push(format!(
                    "{at}.scopes must name at least one of read, keys, admin"
                ));
            }
            if let Some(list) = &t.tenants {
                if t.scopes.contains(&AdminScope::Admin) {
                    p.push(format!(
                        "{at}.tenants cannot limit a token of scope admin (it may do everything)"
                    ));
                } else if !t.scopes.contains(&AdminScope::Keys) {
                    p.push(format!(
                        "{at}.tenants limits the keys scope, which this token does not have"
                    ));
                } else if list.is_empty() {
                    p.push(format!(
                        "{at}.tenants is empty: list the tenants, or leave it out for all"
                    ));
                }
            }
        }
    }
}

impl OpsConfig {
    /// Drops the metrics token's value once `/metrics` holds its digest.
    pub fn forget_secrets(&mut self) {
        self.metrics_token = None;
    }

    pub(crate) fn resolve_secrets(&mut self, problems: &mut Vec<String>) {
        crate::load::read_secret(
            &mut self.metrics_token,
            &self.metrics_token_file,
            "ops.metrics_token",
            problems,
        );
    }

    pub(crate) fn validate_into(&self, p: &mut Vec<String>) {
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.expose().len() < MIN_TOKEN_LEN)
        {
            p.push(format!(
                "ops.metrics_token must be at least {MIN_TOKEN_LEN} bytes"
            ));
        }
    }
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
