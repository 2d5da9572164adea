//! From a validated [`Config`] to running parts: key store, image
//! policies, vendor client — and, on the embedded default (no vendor
//! configured), the built-in simulator and a development tenant.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use livegate_admin::{AdminApi, AdminToken, Scope, TokenDigest};
use livegate_audit::{Audit, AuditRedis, SinkKind};
use livegate_auth::hash::Pepper;
use livegate_auth::key;
use livegate_auth::store::{KeyRecord, KeyStore, Tenant, TenantSettings};
use livegate_auth::{AdminError, Authenticator, KeyAdmin, MemoryStore, RedisSettings, RedisStore};
use livegate_config::{Config, TenantConfig};
use livegate_core::exchange::{ExchangeSink, LogSink};
use livegate_core::{Clock, Secret, SystemClock, hex};
use livegate_metrics::Metrics;
use livegate_stub::{SimulatorSettings, StubHandle};
use livegate_upstream::VendorClient;
use rand::RngExt;

use crate::gateway::{BodyHandling, Gateway, Health, Limits, Protection, Vendor};
use crate::tls::{ReloadingTls, TlsFiles};
use crate::trace::SpanSink;

/// The embedded default's development tenant is limited like a real one,
/// so a newcomer sees the `RateLimit-*` headers and a 429.
pub const DEV_RATE_PER_SECOND: f64 = 5.0;
pub const DEV_BURST: u32 = 10;

/// How long an idempotency claim outlives the vendor call it waits for,
/// before another replica may take it over.
const PROTECTION_LEASE_MARGIN: Duration = Duration::from_secs(5);

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
    let pepper = pepper(config)?;
    let (store, admin_store, dev_key) = key_store(config, &pepper).await?;
    let (vendor, simulator) = vendor(config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let limits = Limits {
        limiter: config
            .ratelimit
            .limiter(&config.redis)
            .map_err(|e| anyhow!("rate limiter: {e}"))?,
        default: config.ratelimit.default_limit(),
        global: config.ratelimit.global_limit(),
    };
    let audit = audit(config)?;
    let (admin, dev_admin_token) = admin_api(config, admin_store, &pepper, &clock, &limits, &audit);
    let otlp_meter = livegate_telemetry::otlp_meter();
    let metrics = Arc::new(Metrics::new().with_otlp(otlp_meter.as_ref().map(|m| &m.meter)));
    let gateway = Gateway {
        authenticator: Authenticator::new(store.clone(), pepper, clock.clone()),
        store,
        images: config.images,
        protection: protection(config)?,
        vendor,
        body: BodyHandling {
            limit: config.server.body_limit(),
            read_timeout: config.server.body_read_timeout,
            blocking_above: config.server.blocking_threshold_bytes,
            image_concurrency: config.server.blocking_threads(),
        },
        admission: config.server.admission(),
        limits,
        mode: config.mode(),
        fail_mode: config.redis.fail_mode,
        health: Health::default(),
        sink: Arc::new(vec![
            Arc::new(LogSink) as Arc<dyn ExchangeSink>,
            Arc::new(SpanSink),
            metrics.clone(),
            audit.sink(),
        ]),
        scheme: config.server.scheme(),
        metrics,
        audit,
        clock,
    };
    if let Some(m) = otlp_meter {
        crate::gateway::observe_parts(&gateway, m.interval);
    }
    Ok(Runtime {
        gateway,
        simulator,
        dev_key,
        tls: tls(config)?,
        admin,
        dev_admin_token,
        metrics_token: config.ops.metrics_token.as_ref().map(TokenDigest::of),
    })
}

/// The pepper keys are hashed with.
fn pepper(config: &Config) -> anyhow::Result<Pepper> {
    match &config.auth.pepper {
        Some(p) => Pepper::new(p.expose().as_bytes()).map_err(|e| anyhow!("auth.pepper: {e}")),
        // Only reachable on the embedded default (validation requires a
        // pepper otherwise): nothing persists, so a per-process one is fine.
        None => Pepper::new(random_bytes::<32>()).map_err(|e| anyhow!("pepper: {e}")),
    }
}

/// The vendor service: the configured vendor, or on the embedded default
/// the built-in simulator, started now.
async fn vendor(config: &Config) -> anyhow::Result<(Vendor, Option<StubHandle>)> {
    let v = &config.vendor;
    let (settings, simulator) = match &v.base_url {
        Some(base) => {
            let key = v.api_key.clone().context("vendor.api_key is required")?;
            (v.client(base.clone(), key), None)
        }
        None => {
            let sim = spawn_simulator(&config.simulator).await?;
            (v.client(sim.base_url(), sim.api_key), Some(sim.handle))
        }
    };
    let settings = settings.with_context(|| {
        let file = v.ca_file.as_deref().unwrap_or(std::path::Path::new(""));
        format!("vendor.ca_file {}", file.display())
    })?;
    let client = VendorClient::new(&settings).map_err(|e| anyhow!("vendor client: {e}"))?;
    let endpoint = client.endpoint().clone();
    let (stack, breaker) = v.stack(client);
    let vendor = Vendor {
        stack,
        breaker,
        endpoint,
    };
    Ok((vendor, simulator))
}

/// The admin API, with the tokens configured or, on the embedded default,
/// a development one (scope `admin`, returned to be shown); without any it
/// is off.
fn admin_api(
    config: &Config,
    store: Arc<dyn KeyAdmin>,
    pepper: &Pepper,
    clock: &Arc<dyn Clock>,
    limits: &Limits,
    audit: &Audit,
) -> (Option<AdminApi>, Option<Secret>) {
    let dev_token = (!config.admin.any_token() && config.is_embedded_default())
        .then(|| Secret::new(format!("lvgadm_{}", hex::encode(&random_bytes::<24>()))));
    let api = admin_tokens(config, dev_token.as_ref()).map(|tokens| {
        let api = AdminApi::without_tokens(store, pepper.clone(), clock.clone(), config.images)
            .with_protection(config.protection)
            .with_limiter(limits.limiter.clone(), limits.default.map(Into::into))
            .with_audit(audit.clone());
        tokens.into_iter().fold(api, AdminApi::with_token)
    });
    (api, dev_token)
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

/// TLS for the public listener, when configured.
fn tls(config: &Config) -> anyhow::Result<Option<ReloadingTls>> {
    let s = &config.server;
    let (Some(cert), Some(key)) = (&s.tls_cert_file, &s.tls_key_file) else {
        return Ok(None);
    };
    let files = TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
    };
    Ok(Some(ReloadingTls::load(files).context("server TLS")?))
}

/// The audit trail with its sink; its writer starts now. Records carry
/// this process's instance id (the host name — the pod's name on
/// Kubernetes — and a random suffix, as sequence numbers restart with the
/// process).
fn audit(config: &Config) -> anyhow::Result<Audit> {
    let redis = match (
        config.audit.sink.contains(SinkKind::Redis),
        &config.redis.url,
    ) {
        (true, Some(url)) => {
            let timeout = config.redis.timeout.max(Duration::from_secs(1));
            Some(AuditRedis {
                backend: livegate_redis::Backend::from_url(url.expose(), timeout)
                    .map_err(|e| anyhow!("audit: redis: {}", livegate_redis::describe(&e)))?,
                command_timeout: timeout,
            })
        }
        _ => None,
    };
    let settings = livegate_audit::AuditSettings {
        instance_id: format!("{}-{}", host_name(), hex::encode(&random_bytes::<4>())),
        ..config.audit.clone()
    };
    Audit::start(settings, redis).map_err(|e| anyhow!("audit: {e}"))
}

/// Where the kernel's host name is read when `$HOSTNAME` is not set.
const HOST_NAME_FILES: [&str; 2] = ["/proc/sys/kernel/hostname", "/etc/hostname"];

/// This machine's name: `$HOSTNAME` (set in containers; shells do not
/// export it), else the kernel's host name, else `livegate`.
fn host_name() -> String {
    host_name_from(std::env::var("HOSTNAME").ok(), &HOST_NAME_FILES)
}

/// The first plain name of `env` and the files' contents: only a
/// DNS-label-like name is used, as it goes into every audit record.
fn host_name_from(env: Option<String>, files: &[impl AsRef<std::path::Path>]) -> String {
    let plain = |h: &String| {
        !h.is_empty()
            && h.len() <= 64
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    env.filter(plain)
        .or_else(|| {
            files
                .iter()
                .filter_map(|f| std::fs::read_to_string(f).ok())
                .map(|h| h.trim().to_owned())
                .find(plain)
        })
        .unwrap_or_else(|| "livegate".into())
}

/// Liveness-aware protection: the deployment's policy, and where it keeps
/// fingerprints and idempotent answers: Redis when `redis.url` is set
/// (shared by every replica), else this process's memory.
fn protection(config: &Config) -> anyhow::Result<Protection> {
    let lease = config
        .vendor
        .timeout
        .saturating_add(PROTECTION_LEASE_MARGIN);
    let policy = config.protection;
    if let Some(url) = &config.redis.url {
        let timeout = config.redis.timeout;
        let backend =
            livegate_redis::Backend::from_url(url.expose(), timeout.max(Duration::from_secs(1)))
                .map_err(|e| anyhow!("protection: redis: {}", livegate_redis::describe(&e)))?;
        let store = Arc::new(livegate_protect::store::RedisStore::new(backend, timeout));
        return Ok(Protection {
            policy,
            replay: store.clone(),
            idempotency: store,
            lease,
        });
    }
    let store = Arc::new(livegate_protect::store::MemoryStore::default());
    Ok(Protection {
        policy,
        replay: store.clone(),
        idempotency: store,
        lease,
    })
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
            command_timeout: config.redis.timeout,
            admin_timeout: config.redis.admin_timeout,
            ..RedisSettings::default()
        };
        let nodes = config.redis.nodes();
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
async fn spawn_simulator(settings: &SimulatorSettings) -> anyhow::Result<Simulator> {
    let api_key = simulator_key(settings);
    let handle = livegate_stub::spawn(settings.stub_config(api_key.expose()))
        .await
        .context("starting the vendor simulator")?;
    Ok(Simulator { handle, api_key })
}

/// The vendor key the simulator expects: configured, or random.
pub fn simulator_key(settings: &SimulatorSettings) -> Secret {
    settings
        .api_key
        .clone()
        .unwrap_or_else(|| Secret::new(hex::encode(&random_bytes::<24>())))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill(&mut b[..]);
    b
}

#[cfg(test)]
mod tests {
    use super::host_name_from;

    #[test]
    fn the_host_name_falls_back_to_the_kernels_then_livegate() {
        let dir = tempfile::tempdir().unwrap();
        let (missing, bad, good) = (
            dir.path().join("missing"),
            dir.path().join("bad"),
            dir.path().join("good"),
        );
        std::fs::write(&bad, "not a name!\n").unwrap();
        std::fs::write(&good, "node-7.example\n").unwrap();
        let files = [&missing, &bad, &good];
        assert_eq!(host_name_from(Some("pod-1".into()), &files), "pod-1");
        // A shell does not export HOSTNAME: the kernel's name, not `livegate`.
        assert_eq!(host_name_from(None, &files), "node-7.example");
        assert_eq!(host_name_from(Some("a b".into()), &files), "node-7.example");
        assert_eq!(host_name_from(None, &[&missing, &bad]), "livegate");
    }
}
