//! From a validated [`Config`] to running parts: key store, image
//! policies, vendor client — and, on the embedded default (no vendor
//! configured), the built-in simulator and a development tenant.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use livegate_admin::{AdminApi, AdminToken, Scope, TokenDigest};
use livegate_audit::{Audit, AuditRedis, AuditSettings, SinkKind};
use livegate_auth::MemoryStore;
use livegate_auth::hash::Pepper;
use livegate_auth::key;
use livegate_auth::store::{KeyRecord, KeyStore, Tenant, TenantSettings};
use livegate_auth::{AdminError, Authenticator, KeyAdmin, RedisSettings, RedisStore};
use livegate_config::{Config, FailMode, SimulatorConfig, TenantConfig};
use livegate_core::admission::{Admission, UploadFloor};
use livegate_core::exchange::{ExchangeSink, LogSink};
use livegate_core::{Secret, SystemClock, hex};
use livegate_metrics::Metrics;
use livegate_ratelimit::{
    FailMode as LimitFailMode, FallbackLimiter, Limit, Limiter, LocalLimiter, RedisLimiter,
    RedisLimiterSettings,
};
use livegate_stub::{Faults, StubConfig, StubHandle};
use livegate_upstream::{
    BreakerHandle, BreakerSettings, CircuitBreakerLayer, ConnectRetryLayer, RetrySettings,
    VendorClient, VendorSettings,
};
use rand::RngExt;
use tower::ServiceBuilder;

use crate::gateway::{Gateway, Health, ProtectionStore, VendorStack};
use crate::tls::{ReloadingTls, TlsFiles};
use crate::trace::SpanSink;

/// The embedded default's development tenant is limited like a real one,
/// so a newcomer sees the `RateLimit-*` headers and a 429.
pub const DEV_RATE_PER_SECOND: f64 = 5.0;
pub const DEV_BURST: u32 = 10;

/// The running parts, plus what must live as long as they do.
pub struct Runtime {
    pub gateway: Gateway,
    /// The built-in simulator, on the embedded default.
    pub simulator: Option<StubHandle>,
    /// A development key made because no tenant was configured (embedded
    /// default only); shown once at start-up.
    pub dev_key: Option<Secret>,
    /// TLS for the public listener, when configured (reloaded on change).
    pub tls: Option<ReloadingTls>,
    /// The admin API, when an admin token is configured (or made for the
    /// embedded default).
    pub admin: Option<AdminApi>,
    /// A development admin token made for the embedded default; shown once.
    pub dev_admin_token: Option<Secret>,
    /// `[ops] metrics_token`: `/metrics` needs it when set.
    pub metrics_token: Option<TokenDigest>,
}

/// Builds everything; spawns the simulator on the embedded default.
pub async fn build(config: &Config) -> anyhow::Result<Runtime> {
    if let Some(problem) = config.serve_problems().into_iter().next() {
        anyhow::bail!("{problem}");
    }
    let embedded = config.is_embedded_default();
    let pepper = match &config.auth.pepper {
        Some(p) => Pepper::new(p.expose().as_bytes()).map_err(|e| anyhow!("auth.pepper: {e}"))?,
        // Only reachable on the embedded default (validation requires a
        // pepper otherwise): nothing persists, so a per-process one is fine.
        None => Pepper::new(random_bytes::<32>()).map_err(|e| anyhow!("pepper: {e}"))?,
    };
    let (store, admin_store, dev_key) = key_store(config, &pepper).await?;

    let (simulator, settings) = if embedded {
        let sim = spawn_simulator(&config.simulator).await?;
        let settings = vendor_settings(config, sim.base_url(), sim.api_key.clone())?;
        (Some(sim.handle), settings)
    } else {
        let base = config.vendor.base_url.clone().unwrap_or_default();
        let key = config
            .vendor
            .api_key
            .clone()
            .context("vendor.api_key is required")?;
        (None, vendor_settings(config, base, key)?)
    };
    let client = VendorClient::new(&settings).map_err(|e| anyhow!("vendor client: {e}"))?;
    let vendor_endpoint = client.endpoint().clone();
    let (vendor, breaker) = vendor_stack(config, client);

    let clock = Arc::new(SystemClock);
    // The admin tokens: configured, or a development one (scope `admin`)
    // for the embedded default; without any the admin routes are off.
    let dev_admin_token = (!config.admin.any_token() && embedded)
        .then(|| Secret::new(format!("lvgadm_{}", hex::encode(&random_bytes::<24>()))));
    let admin = admin_tokens(config, dev_admin_token.as_ref()).map(|tokens| {
        let api =
            AdminApi::without_tokens(admin_store, pepper.clone(), clock.clone(), config.images)
                .with_protection(config.protection);
        tokens.into_iter().fold(api, AdminApi::with_token)
    });
    let authenticator = Authenticator::new(store.clone(), pepper, clock.clone());
    let limiter = limiter(config)?;
    let default_rate = config
        .ratelimit
        .default_rate_per_second
        .map(|r| (r, config.ratelimit.default_burst));
    let audit = audit(config)?;
    let admin = admin.map(|a| {
        a.with_limiter(limiter.clone(), default_rate)
            .with_audit(audit.clone())
    });
    let otlp_meter = livegate_telemetry::otlp_meter();
    let metrics = Arc::new(Metrics::new().with_otlp(otlp_meter.as_ref().map(|m| &m.meter)));
    let gateway = Gateway {
        authenticator,
        store,
        images: config.images,
        protection: config.protection,
        protection_store: protection_store(config)?,
        protection_lease: Duration::from_millis(config.vendor.timeout_ms)
            .saturating_add(Duration::from_secs(5)),
        vendor,
        breaker,
        body_limit: usize::try_from(config.server.body_limit_bytes).unwrap_or(usize::MAX),
        body_read_timeout: config.server.body_read_timeout(),
        blocking_above: config.server.blocking_threshold_bytes,
        image_concurrency: config.server.blocking_threads(),
        admission: Admission::with(
            config.server.max_inflight_requests,
            usize::try_from(config.server.inflight_body_budget_bytes).unwrap_or(usize::MAX),
            config.server.tenant_body_share,
            Some(UploadFloor {
                bytes_per_second: config.server.min_upload_bytes_per_second,
                grace: Duration::from_millis(config.server.upload_grace_ms),
                window: Duration::from_millis(config.server.upload_rate_window_ms),
            }),
        ),
        limiter,
        default_rate,
        global_limit: config
            .ratelimit
            .global_rate_per_second
            .map(|rate_per_second| Limit {
                rate_per_second,
                burst: config.ratelimit.global_burst,
                monthly_quota: None,
            }),
        mode: mode(config),
        store_fail_closed: config.redis.fail_mode == FailMode::Closed,
        health: Health::default(),
        sink: Arc::new(vec![
            Arc::new(LogSink) as Arc<dyn ExchangeSink>,
            Arc::new(SpanSink),
            metrics.clone(),
            audit.sink(),
        ]),
        scheme: if config.server.tls_cert_file.is_some() {
            "https"
        } else {
            "http"
        },
        vendor_endpoint,
        metrics,
        audit: audit.clone(),
        clock,
    };
    if let Some(m) = otlp_meter {
        crate::gateway::observe_parts(&gateway, m.interval);
    }
    let tls = match (&config.server.tls_cert_file, &config.server.tls_key_file) {
        (Some(cert), Some(key)) => Some(
            ReloadingTls::load(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            })
            .context("server TLS")?,
        ),
        _ => None,
    };
    Ok(Runtime {
        gateway,
        simulator,
        dev_key,
        tls,
        admin,
        dev_admin_token,
        metrics_token: config.ops.metrics_token.as_ref().map(TokenDigest::of),
    })
}

/// The admin API's tokens (`[admin] token` or the development one, scope
/// `admin`; then `[[admin.tokens]]`), held from here on as digests only;
/// `None` when there is none (the admin routes are off).
fn admin_tokens(config: &Config, dev_admin_token: Option<&Secret>) -> Option<Vec<AdminToken>> {
    let mut tokens: Vec<AdminToken> = config
        .admin
        .token
        .as_ref()
        .or(dev_admin_token)
        .map(|t| AdminToken::new("admin", t, [Scope::Admin], None))
        .into_iter()
        .collect();
    for t in &config.admin.tokens {
        // Validation made sure each has its value (inline or from its file).
        if let Some(secret) = &t.token {
            tokens.push(AdminToken::new(
                t.name.clone(),
                secret,
                t.scopes.iter().copied(),
                t.tenants.clone(),
            ));
        }
    }
    (!tokens.is_empty()).then_some(tokens)
}

/// The audit trail with its sink; its writer starts now. Records carry
/// this process's instance id (the host name — the pod's name on
/// Kubernetes — and a random suffix, as sequence numbers restart with the
/// process).
fn audit(config: &Config) -> anyhow::Result<Audit> {
    let a = &config.audit;
    let sink = a.sink.clone();
    let redis = match (a.sink.contains(SinkKind::Redis), &config.redis.url) {
        (true, Some(url)) => Some(AuditRedis {
            backend: livegate_redis::Backend::from_url(
                url.expose(),
                Duration::from_millis(config.redis.timeout_ms.max(1000)),
            )
            .map_err(|e| anyhow!("audit: redis: {}", livegate_redis::describe(&e)))?,
            command_timeout: Duration::from_millis(config.redis.timeout_ms.max(1000)),
        }),
        _ => None,
    };
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 64
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or_else(|| "livegate".into());
    let settings = AuditSettings {
        sink,
        path: a.path.clone(),
        max_file_bytes: a.max_file_bytes,
        max_files: a.max_files,
        stream_key: a.stream.clone(),
        stream_max_len: a.stream_max_len,
        lookup_ttl: Duration::from_secs(a.lookup_retention_hours.saturating_mul(3600)),
        capacity: a.capacity,
        max_wait: Duration::from_millis(a.max_wait_ms),
        instance_id: format!("{host}-{}", hex::encode(&random_bytes::<4>())),
    };
    Audit::start(settings, redis).map_err(|e| anyhow!("audit: {e}"))
}

/// Where liveness-aware protection keeps fingerprints and idempotent
/// answers: Redis when `redis.url` is set (shared by every replica), else
/// this process's memory.
fn protection_store(config: &Config) -> anyhow::Result<ProtectionStore> {
    if let Some(url) = &config.redis.url {
        let timeout = Duration::from_millis(config.redis.timeout_ms);
        let backend =
            livegate_redis::Backend::from_url(url.expose(), timeout.max(Duration::from_secs(1)))
                .map_err(|e| anyhow!("protection: redis: {}", livegate_redis::describe(&e)))?;
        let store = Arc::new(livegate_protect::store::RedisStore::new(backend, timeout));
        return Ok(ProtectionStore {
            replay: store.clone(),
            idempotency: store,
        });
    }
    let store = Arc::new(livegate_protect::store::MemoryStore::default());
    Ok(ProtectionStore {
        replay: store.clone(),
        idempotency: store,
    })
}

/// `vendor`; `simulator` when explicitly enabled although production
/// settings are there; `embedded` when nothing is configured.
pub fn mode(config: &Config) -> &'static str {
    if !config.is_embedded_default() {
        "vendor"
    } else if config.simulator.enabled {
        "simulator"
    } else {
        "embedded"
    }
}

/// The one place the key store is chosen: Redis when `redis.url` is set
/// (shared by every replica; the configured tenants are written into it if
/// missing), else the in-memory store loaded with the configured tenants —
/// plus, on the embedded default without tenants, a development tenant
/// whose key is returned to be shown.
async fn key_store(
    config: &Config,
    pepper: &Pepper,
) -> anyhow::Result<(Arc<dyn KeyStore>, Arc<dyn KeyAdmin>, Option<Secret>)> {
    if let Some(url) = &config.redis.url {
        let settings = RedisSettings {
            command_timeout: Duration::from_millis(config.redis.timeout_ms),
            admin_timeout: Duration::from_millis(config.redis.admin_timeout_ms),
            ..RedisSettings::default()
        };
        let nodes: Vec<&str> = url.expose().split(',').map(str::trim).collect();
        let store = if nodes.len() > 1 {
            RedisStore::new_cluster(&nodes, settings)
        } else {
            RedisStore::new(url.expose(), settings)
        };
        let store = Arc::new(store.map_err(|e| anyhow!("redis: {e}"))?);
        if let Err(e) = bootstrap(&*store, &config.tenants).await {
            // Not fatal: the store serves what it has once Redis answers.
            tracing::warn!(error = %e, "could not write the configured tenants to redis");
        }
        return Ok((store.clone(), store, None));
    }
    let store = Arc::new(MemoryStore::new());
    load_tenants(&store, &config.tenants);
    let mut dev_key = None;
    if config.is_embedded_default() && config.tenants.is_empty() {
        let new = key::generate();
        store.put_tenant(Tenant {
            name: Some("development tenant (embedded default)".into()),
            settings: TenantSettings {
                rate_per_second: Some(DEV_RATE_PER_SECOND),
                burst: Some(DEV_BURST),
                ..TenantSettings::default()
            },
            ..Tenant::new("dev")
        });
        store.put_key(KeyRecord::new(new.kid.clone(), "dev", new.hash(pepper)));
        dev_key = Some(new.plaintext);
    }
    Ok((store.clone(), store, dev_key))
}

/// Writes the configured tenants and keys into a shared store: a tenant
/// that exists already is left as it is (the admin API owns it at run
/// time); keys are written as configured.
async fn bootstrap(store: &dyn KeyAdmin, tenants: &[TenantConfig]) -> Result<(), AdminError> {
    for t in tenants {
        match store.create_tenant(tenant_of(t)).await {
            Ok(_) | Err(AdminError::TenantExists) => {}
            Err(e) => return Err(e),
        }
        for k in &t.keys {
            store.add_key(key_of(t, k)).await?;
        }
    }
    Ok(())
}

fn tenant_of(t: &TenantConfig) -> Tenant {
    Tenant {
        id: t.id.clone(),
        name: t.name.clone(),
        disabled: t.disabled,
        settings: TenantSettings {
            images: t.images,
            protection: t.protection,
            rate_per_second: t.rate_per_second,
            burst: t.burst,
            monthly_quota: t.monthly_quota,
        },
        created_at: None,
        updated_at: None,
    }
}

fn key_of(t: &TenantConfig, k: &livegate_config::KeyConfig) -> KeyRecord {
    let mut record = KeyRecord::new(k.id.clone(), t.id.clone(), k.hash);
    record.expires_at = k.expires_at;
    record.revoked = k.revoked;
    record
}

/// The rate limiter: exact GCRA and monthly quotas shared through Redis
/// (with a per-replica fallback by `redis.fail_mode`) when Redis is
/// configured, else in this process.
fn limiter(config: &Config) -> anyhow::Result<Arc<dyn Limiter>> {
    let Some(url) = &config.redis.url else {
        return Ok(Arc::new(LocalLimiter::new()));
    };
    let settings = RedisLimiterSettings {
        command_timeout: Duration::from_millis(config.ratelimit.timeout_ms),
        ..RedisLimiterSettings::default()
    };
    let nodes: Vec<&str> = url.expose().split(',').map(str::trim).collect();
    let redis = if nodes.len() > 1 {
        RedisLimiter::new_cluster(&nodes, settings)
    } else {
        RedisLimiter::new(url.expose(), settings)
    }
    .map_err(|e| anyhow!("rate limiter: {e}"))?;
    let mode = match config.redis.fail_mode {
        FailMode::Local => LimitFailMode::Local,
        FailMode::Open => LimitFailMode::Open,
        FailMode::Closed => LimitFailMode::Closed,
    };
    Ok(Arc::new(FallbackLimiter::new(
        redis,
        mode,
        config.ratelimit.replicas,
    )))
}

/// The vendor service: `[breaker] -> [retry] -> client`. The breaker is
/// outermost so that it sees one outcome per call, retried or not; the retry
/// only repeats a call whose connection failed, so nothing was sent.
fn vendor_stack(config: &Config, client: VendorClient) -> (VendorStack, BreakerHandle) {
    let v = &config.vendor;
    let breaker = CircuitBreakerLayer::new(BreakerSettings {
        consecutive_failures: v.breaker_consecutive_failures,
        failure_ratio: v.breaker_failure_ratio,
        min_requests: v.breaker_min_requests,
        window: Duration::from_millis(v.breaker_window_ms),
        open_for: Duration::from_millis(v.breaker_open_ms),
        ..BreakerSettings::default()
    });
    let handle = breaker.handle();
    let retry = ConnectRetryLayer::new(RetrySettings {
        retry_ratio: v.retry_budget_ratio,
        min_retries_per_sec: if v.retry_budget_ratio > 0.0 { 1 } else { 0 },
        ..RetrySettings::default()
    });
    let stack = ServiceBuilder::new()
        .layer(breaker)
        .layer(retry)
        .service(client);
    (stack, handle)
}

fn vendor_settings(
    config: &Config,
    base_url: String,
    api_key: Secret,
) -> anyhow::Result<VendorSettings> {
    let v = &config.vendor;
    let ca_pem = v
        .ca_file
        .as_ref()
        .map(|f| std::fs::read(f).with_context(|| format!("vendor.ca_file {}", f.display())))
        .transpose()?;
    Ok(VendorSettings {
        base_url,
        api_key,
        connect_timeout: Duration::from_millis(v.connect_timeout_ms),
        timeout: Duration::from_millis(v.timeout_ms),
        max_response_bytes: usize::try_from(v.max_response_bytes).unwrap_or(usize::MAX),
        http2_prior_knowledge: v.http2_prior_knowledge,
        pool_idle_timeout: Duration::from_millis(v.pool_idle_timeout_ms),
        ca_pem,
    })
}

fn load_tenants(store: &MemoryStore, tenants: &[TenantConfig]) {
    for t in tenants {
        store.put_tenant(tenant_of(t));
        for k in &t.keys {
            store.put_key(key_of(t, k));
        }
    }
}

/// A running simulator and the vendor key it expects.
pub struct Simulator {
    pub handle: StubHandle,
    pub api_key: Secret,
}

impl Simulator {
    pub fn base_url(&self) -> String {
        self.handle.base_url()
    }
}

/// Starts the simulator on an ephemeral loopback port.
async fn spawn_simulator(cfg: &SimulatorConfig) -> anyhow::Result<Simulator> {
    let api_key = simulator_key(cfg);
    let handle = livegate_stub::spawn(stub_config(cfg, api_key.expose()))
        .await
        .context("starting the vendor simulator")?;
    Ok(Simulator { handle, api_key })
}

/// The vendor key the simulator expects: configured, or random.
pub fn simulator_key(cfg: &SimulatorConfig) -> Secret {
    cfg.api_key
        .clone()
        .unwrap_or_else(|| Secret::new(hex::encode(&random_bytes::<24>())))
}

/// The simulator's settings from the `[simulator]` section.
pub fn stub_config(cfg: &SimulatorConfig, api_key: &str) -> StubConfig {
    StubConfig {
        api_key: api_key.to_owned(),
        latency: Duration::from_millis(cfg.latency_ms),
        jitter: Duration::from_millis(cfg.jitter_ms),
        faults: Faults {
            reset_rate: cfg.reset_rate,
            timeout_rate: cfg.timeout_rate,
            server_error_rate: cfg.server_error_rate,
            malformed_rate: cfg.malformed_rate,
            error_rate: cfg.error_rate,
            hang: Duration::from_millis(cfg.hang_ms),
        },
        // Never keep an image around outside tests.
        record: false,
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill(&mut b[..]);
    b
}
