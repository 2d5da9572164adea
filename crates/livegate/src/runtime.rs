//! From a validated [`Config`] to running parts: key store, image
//! policies, vendor client — and, on the embedded default (no vendor
//! configured), the built-in simulator and a development tenant.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use livegate_auth::authn::{Authenticator, SystemClock};
use livegate_auth::hash::{KeyHash, Pepper};
use livegate_auth::key::{self, KeyId};
use livegate_auth::store::{KeyRecord, MemoryStore, Tenant};
use livegate_config::{Config, Secret, SimulatorConfig, TenantConfig};
use livegate_payload::{ImageFormat, ImagePolicy};
use livegate_stub::{Faults, StubConfig, StubHandle};
use livegate_upstream::{VendorClient, VendorSettings};
use rand::RngExt;

use crate::gateway::{Gateway, Health};
use crate::normalize::Policies;

/// The running parts, plus what must live as long as they do.
pub struct Runtime {
    pub gateway: Gateway,
    /// The built-in simulator, on the embedded default.
    pub simulator: Option<StubHandle>,
    /// A development key made because no tenant was configured (embedded
    /// default only); shown once at start-up.
    pub dev_key: Option<Secret>,
}

/// Builds everything; spawns the simulator on the embedded default.
pub async fn build(config: &Config) -> anyhow::Result<Runtime> {
    let embedded = config.is_embedded_default();
    let pepper = match &config.auth.pepper {
        Some(p) => Pepper::new(p.expose().as_bytes()).map_err(|e| anyhow!("auth.pepper: {e}"))?,
        // Only reachable on the embedded default (validation requires a
        // pepper otherwise): nothing persists, so a per-process one is fine.
        None => Pepper::new(random_bytes::<32>()).map_err(|e| anyhow!("pepper: {e}"))?,
    };

    let store = MemoryStore::new();
    load_tenants(&store, &config.tenants)?;
    let mut dev_key = None;
    if embedded && config.tenants.is_empty() {
        let new = key::generate();
        store.put_tenant(Tenant {
            id: "dev".into(),
            name: Some("development tenant (embedded default)".into()),
            disabled: false,
        });
        store.put_key(KeyRecord {
            kid: new.kid.clone(),
            tenant_id: "dev".into(),
            hash: new.hash(&pepper),
            expires_at: None,
            revoked: false,
        });
        dev_key = Some(Secret::new(new.plaintext.expose()));
    }

    let (simulator, settings) = if embedded {
        let sim = spawn_simulator(&config.simulator).await?;
        let settings = vendor_settings(config, sim.base_url(), sim.api_key.expose().to_owned())?;
        (Some(sim.handle), settings)
    } else {
        let base = config.vendor.base_url.clone().unwrap_or_default();
        let key = config
            .vendor
            .api_key
            .as_ref()
            .map(|k| k.expose().to_owned())
            .context("vendor.api_key is required")?;
        (None, vendor_settings(config, base, key)?)
    };
    let vendor = VendorClient::new(&settings).map_err(|e| anyhow!("vendor client: {e}"))?;

    let authenticator = Authenticator::new(Arc::new(store), pepper, Arc::new(SystemClock));
    let gateway = Gateway {
        authenticator,
        policies: Arc::new(policies(config)),
        vendor,
        body_limit: usize::try_from(config.server.body_limit_bytes).unwrap_or(usize::MAX),
        body_read_timeout: config.server.body_read_timeout(),
        mode: if embedded { "embedded" } else { "vendor" },
        health: Health::default(),
    };
    Ok(Runtime {
        gateway,
        simulator,
        dev_key,
    })
}

fn vendor_settings(
    config: &Config,
    base_url: String,
    api_key: String,
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

fn load_tenants(store: &MemoryStore, tenants: &[TenantConfig]) -> anyhow::Result<()> {
    for t in tenants {
        store.put_tenant(Tenant {
            id: t.id.clone(),
            name: t.name.clone(),
            disabled: t.disabled,
        });
        for k in &t.keys {
            let expires_at = k
                .expires_at
                .as_deref()
                .map(humantime::parse_rfc3339_weak)
                .transpose()
                .with_context(|| format!("tenant {}: key expires_at", t.id))?;
            store.put_key(KeyRecord {
                kid: KeyId::from_str(&k.id).map_err(|e| anyhow!("tenant {}: key id: {e}", t.id))?,
                tenant_id: t.id.clone(),
                hash: KeyHash::from_str(&k.hash)
                    .map_err(|e| anyhow!("tenant {}: key hash: {e}", t.id))?,
                expires_at,
                revoked: k.revoked,
            });
        }
    }
    Ok(())
}

fn policies(config: &Config) -> Policies {
    let default = image_policy(&config.images.formats, config.images_bounds(None));
    let tenants = config
        .tenants
        .iter()
        .map(|t| {
            let formats = t.images.formats.as_ref().unwrap_or(&config.images.formats);
            (
                t.id.clone(),
                image_policy(formats, config.images_bounds(Some(t))),
            )
        })
        .collect();
    Policies { default, tenants }
}

fn image_policy(
    formats: &[String],
    (min_w, min_h, max_w, max_h): (u32, u32, u32, u32),
) -> ImagePolicy {
    ImagePolicy {
        // Names were checked by validation.
        formats: formats
            .iter()
            .filter_map(|f| ImageFormat::from_str(f).ok())
            .collect(),
        min_width: min_w,
        min_height: min_h,
        max_width: max_w,
        max_height: max_h,
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
        .unwrap_or_else(|| Secret::new(hex(&random_bytes::<24>())))
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
