use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use livegate_admin::Scope as AdminScope;
use livegate_auth::{KeyHash, KeyId};
use livegate_core::{Secret, Timestamp};
use livegate_payload::{ImageOverrides, ImagePolicy};
use livegate_protect::{ProtectionOverrides, ProtectionPolicy};
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub vendor: VendorConfig,
    pub auth: AuthConfig,
    /// The shared store of tenants and keys (and, later, rate limits).
    pub redis: RedisConfig,
    /// Rate limits: defaults and how the limiter runs.
    pub ratelimit: RateLimitConfig,
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
    pub simulator: SimulatorConfig,
    /// The audit trail: one record per liveness request.
    pub audit: AuditConfig,
    pub log: LogConfig,
    /// Bootstrap tenants and their key hashes (never plaintext keys).
    pub tenants: Vec<TenantConfig>,
}

/// Listeners, the connection edge and request handling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Public listener (the liveness route, /livez, /readyz).
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: u64,
    /// How long a client may take to send its body.
    pub body_read_timeout_ms: u64,
    /// A connection must deliver a complete request head within this long:
    /// from accept for its first byte, then from its first byte; an idle
    /// HTTP/1.1 keep-alive connection is closed after this long too.
    pub header_read_timeout_ms: u64,
    /// An HTTP/2 connection with no request in flight is closed after this long.
    pub idle_timeout_ms: u64,
    /// Open connections at most; beyond it the gateway stops accepting until one closes.
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes; HTTP/2: header list size.
    pub max_header_bytes: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// Liveness requests in flight at most; beyond it 503 with Retry-After.
    pub max_inflight_requests: usize,
    /// Body bytes the liveness requests in flight may hold (see the README for
    /// how a request is charged); beyond it 503 with Retry-After.
    pub inflight_body_budget_bytes: u64,
    /// The share of `inflight_body_budget_bytes` (0 < share <= 1) one tenant
    /// may hold while another tenant is active; a tenant alone may use it all.
    pub tenant_body_share: f64,
    /// After `upload_grace_ms`, a body arriving slower than this (averaged
    /// over `upload_rate_window_ms`) ends with 408; 0 turns the floor off.
    pub min_upload_bytes_per_second: u64,
    /// How long a body may take before the upload-rate floor applies.
    pub upload_grace_ms: u64,
    /// The window the upload rate is averaged over.
    pub upload_rate_window_ms: u64,
    /// After an answer sent before the body was read, how long the rest of
    /// the body is read and discarded (a lingering close) at most.
    pub lingering_timeout_ms: u64,
    /// ... and how many of its bytes at most; none: `body_limit_bytes`.
    pub lingering_bytes: Option<u64>,
    /// Bodies larger than this are decoded and hashed on the blocking pool.
    pub blocking_threshold_bytes: usize,
    /// Threads of the blocking pool (image decodes, large bodies) at most,
    /// which is also how many images are fingerprinted at once; none: two
    /// per CPU.
    pub blocking_threads: Option<usize>,
    /// On SIGTERM, how long `/readyz` answers 503 while requests are still
    /// served, before the listener stops accepting.
    pub shutdown_delay_ms: u64,
    /// Then, how long in-flight requests may take to finish.
    pub drain_timeout_ms: u64,
    /// TLS on the public listener: certificate chain (PEM); with `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// TLS private key (PEM); reloaded with the certificate when either changes.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            body_limit_bytes: 10 * 1024 * 1024,
            body_read_timeout_ms: 30_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
            max_header_bytes: 16 * 1024,
            http2_max_concurrent_streams: 100,
            max_inflight_requests: 512,
            inflight_body_budget_bytes: 256 * 1024 * 1024,
            tenant_body_share: 0.25,
            min_upload_bytes_per_second: 64 * 1024,
            upload_grace_ms: 2_000,
            upload_rate_window_ms: 1_000,
            lingering_timeout_ms: 5_000,
            lingering_bytes: None,
            blocking_threshold_bytes: 512 * 1024,
            blocking_threads: None,
            shutdown_delay_ms: 5_000,
            drain_timeout_ms: 10_000,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// Most threads `server.blocking_threads` may ask for.
pub const MAX_BLOCKING_THREADS: usize = 512;

impl ServerConfig {
    /// `blocking_threads`, or two per CPU the process may use.
    pub fn blocking_threads(&self) -> usize {
        self.blocking_threads
            .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, usize::from))
    }
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
    /// `lingering_bytes`, or the body limit.
    pub fn lingering_bytes(&self) -> u64 {
        self.lingering_bytes.unwrap_or(self.body_limit_bytes)
    }
}

/// The upstream liveness vendor. With no `base_url`, the gateway runs the
/// built-in simulator instead (the embedded default).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VendorConfig {
    /// e.g. `https://vendor.example.com`; the gateway calls `{base_url}/modules/liveness`.
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    /// A file holding the vendor key (a mounted Kubernetes secret).
    pub api_key_file: Option<PathBuf>,
    pub connect_timeout_ms: u64,
    /// Whole vendor call: connect, send, and read the answer.
    pub timeout_ms: u64,
    /// Largest vendor answer accepted; larger is a bad response (502).
    pub max_response_bytes: u64,
    /// Speak HTTP/2 without TLS negotiation (h2c); over TLS, ALPN picks HTTP/2 or 1.1 anyway.
    pub http2_prior_knowledge: bool,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout_ms: u64,
    /// Extra CA certificates (PEM) to trust for the vendor, besides the
    /// built-in Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// The circuit opens after this many failed calls in a row (0: never on that count).
    pub breaker_consecutive_failures: u32,
    /// ... or when this share of the calls in the window failed (with enough calls).
    pub breaker_failure_ratio: f64,
    /// Calls in the window before the ratio counts.
    pub breaker_min_requests: u32,
    pub breaker_window_ms: u64,
    /// How long the circuit stays open before one probe call is let through.
    pub breaker_open_ms: u64,
    /// Retries of calls whose connection failed (nothing was sent), as a
    /// share of recent calls; at most one retry per call. 0 turns them off.
    pub retry_budget_ratio: f32,
}

impl Default for VendorConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            api_key: None,
            api_key_file: None,
            connect_timeout_ms: 2_000,
            timeout_ms: 10_000,
            max_response_bytes: 1024 * 1024,
            http2_prior_knowledge: false,
            pool_idle_timeout_ms: 90_000,
            ca_file: None,
            breaker_consecutive_failures: 5,
            breaker_failure_ratio: 0.5,
            breaker_min_requests: 20,
            breaker_window_ms: 10_000,
            breaker_open_ms: 10_000,
            retry_budget_ratio: 0.1,
        }
    }
}

/// Redis: tenants and keys shared by every replica. Without a URL each
/// replica keeps them in memory (the embedded default, or config tenants).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…`; several,
    /// comma-separated, are the nodes of a Redis Cluster. A secret (it may
    /// hold a password).
    pub url: Option<Secret>,
    pub url_file: Option<PathBuf>,
    /// With Redis unreachable: `local` (keys verified before keep working,
    /// default), `open`, or `closed` (`/readyz` fails too).
    pub fail_mode: FailMode,
    /// Bound on every Redis command.
    pub timeout_ms: u64,
    /// Bound on each Redis command of an admin call (key issuance and the
    /// other writes): longer than `timeout_ms`, since an operator waits for
    /// it and a timed-out write may still have landed.
    pub admin_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            fail_mode: FailMode::Local,
            timeout_ms: 50,
            admin_timeout_ms: 2_000,
        }
    }
}

/// What the gateway does while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Local,
    Open,
    Closed,
}

/// Rate limiting: the per-tenant settings are on the tenants; these are the
/// defaults for tenants without them, and how the limiter runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Rate for a tenant that sets none; unset: such tenants are not limited.
    pub default_rate_per_second: Option<f64>,
    /// Burst for a tenant that sets none (with a rate).
    pub default_burst: u32,
    /// A cap over all tenants together (protecting the vendor account);
    /// unset: none.
    pub global_rate_per_second: Option<f64>,
    pub global_burst: u32,
    /// Replicas sharing the limits: with Redis unreachable and
    /// `fail_mode = "local"`, each replica allows 1/replicas of the rate.
    pub replicas: u32,
    /// Bound on the limiter's Redis round trip.
    pub timeout_ms: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            default_rate_per_second: None,
            default_burst: 10,
            global_rate_per_second: None,
            global_burst: 50,
            replicas: 1,
            timeout_ms: 25,
        }
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

/// The built-in vendor simulator (embedded default and `livegate stub`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    /// Serve with the simulator although tenants or a pepper are configured
    /// (and no `vendor.base_url`): an explicit opt-in, never a fallback.
    pub enabled: bool,
    /// Listener of `livegate stub`.
    pub listen: SocketAddr,
    /// Vendor key the simulator expects; random when unset.
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Probabilities, 0.0 to 1.0, checked per request in this order.
    pub reset_rate: f64,
    pub timeout_rate: f64,
    pub server_error_rate: f64,
    pub malformed_rate: f64,
    pub error_rate: f64,
    /// How long a "timeout" fault hangs before answering.
    pub hang_ms: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            api_key: None,
            api_key_file: None,
            latency_ms: 0,
            jitter_ms: 0,
            reset_rate: 0.0,
            timeout_rate: 0.0,
            server_error_rate: 0.0,
            malformed_rate: 0.0,
            error_rate: 0.0,
            hang_ms: 60_000,
        }
    }
}

/// The audit trail: exactly one JSON record per liveness request, never
/// silently dropped (see the README's *Audit trail*).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `stdout` (default; application logs go to stderr), `file`, `redis`
    /// or `otlp`, or a list of them (`["file", "otlp"]`).
    pub sink: livegate_audit::Sinks,
    /// The file, for `sink = "file"`.
    pub path: Option<PathBuf>,
    /// The file is rotated (`path.1`, `path.2`, …) before it would grow past this.
    pub max_file_bytes: u64,
    /// Rotated files kept; older ones are deleted.
    pub max_files: u32,
    /// The Redis Stream, for `sink = "redis"` (lookups by transactionId use
    /// `<stream>:tx:<transactionId>` keys).
    pub stream: String,
    /// The stream is trimmed to about this many records.
    pub stream_max_len: u64,
    /// How long a record can be looked up by transactionId (Redis sink).
    pub lookup_retention_hours: u64,
    /// Records reserved (requests in flight) or waiting to be written.
    pub capacity: usize,
    /// How long a new request waits for a place before the documented 503
    /// (50305) when the sink is stuck.
    pub max_wait_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            sink: livegate_audit::Sinks::default(),
            path: None,
            max_file_bytes: 100 * 1024 * 1024,
            max_files: 10,
            stream: "livegate:{audit}".into(),
            stream_max_len: 1_000_000,
            lookup_retention_hours: 24 * 30,
            capacity: 10_000,
            max_wait_ms: 1000,
        }
    }
}

/// Where audit records go (owned by the audit crate).
pub use livegate_audit::SinkKind as AuditSink;

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `livegate=debug,info`; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
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
