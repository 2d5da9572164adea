//! `[vendor]`: where the liveness vendor is, how long a call may take, and
//! when the circuit opens.

use std::path::PathBuf;
use std::time::Duration;

use livegate_core::Secret;
use livegate_core::serde_duration::millis;
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;

use crate::{
    BreakerHandle, BreakerSettings, CircuitBreaker, CircuitBreakerLayer, ConnectRetry,
    ConnectRetryLayer, RetrySettings, VendorClient, VendorSettings,
};

/// The vendor service the gateway calls: breaker, then connect retry, then
/// the client.
pub type VendorStack = CircuitBreaker<ConnectRetry<VendorClient>>;

/// The upstream liveness vendor. With no `base_url`, the gateway runs the
/// built-in simulator instead (the embedded default).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSettings {
    /// e.g. `https://vendor.example.com`; the gateway calls `{base_url}/modules/liveness`.
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    /// A file holding the vendor key (a mounted Kubernetes secret).
    pub api_key_file: Option<PathBuf>,
    #[serde(rename = "connect_timeout_ms", with = "millis")]
    pub connect_timeout: Duration,
    /// Whole vendor call: connect, send, and read the answer.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// Largest vendor answer accepted; larger is a bad response (502).
    pub max_response_bytes: u64,
    /// Speak HTTP/2 without TLS negotiation (h2c); over TLS, ALPN picks HTTP/2 or 1.1 anyway.
    pub http2_prior_knowledge: bool,
    /// Idle pooled connections are closed after this long.
    #[serde(rename = "pool_idle_timeout_ms", with = "millis")]
    pub pool_idle_timeout: Duration,
    /// Extra CA certificates (PEM) to trust for the vendor, besides the
    /// built-in Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// The circuit opens after this many failed calls in a row (0: never on that count).
    pub breaker_consecutive_failures: u32,
    /// ... or when this share of the calls in the window failed (with enough calls).
    pub breaker_failure_ratio: f64,
    /// Calls in the window before the ratio counts.
    pub breaker_min_requests: u32,
    #[serde(rename = "breaker_window_ms", with = "millis")]
    pub breaker_window: Duration,
    /// How long the circuit stays open before one probe call is let through.
    #[serde(rename = "breaker_open_ms", with = "millis")]
    pub breaker_open: Duration,
    /// Retries of calls whose connection failed (nothing was sent), as a
    /// share of recent calls; at most one retry per call. 0 turns them off.
    pub retry_budget_ratio: f64,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            api_key: None,
            api_key_file: None,
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            max_response_bytes: 1024 * 1024,
            http2_prior_knowledge: false,
            pool_idle_timeout: Duration::from_secs(90),
            ca_file: None,
            breaker_consecutive_failures: 5,
            breaker_failure_ratio: 0.5,
            breaker_min_requests: 20,
            breaker_window: Duration::from_secs(10),
            breaker_open: Duration::from_secs(10),
            retry_budget_ratio: 0.1,
        }
    }
}

impl UpstreamSettings {
    /// The client's settings, calling `base_url` with `api_key` (the
    /// configured vendor, or the built-in simulator); reads `ca_file`.
    pub fn client(&self, base_url: String, api_key: Secret) -> std::io::Result<VendorSettings> {
        let ca_pem = self.ca_file.as_ref().map(std::fs::read).transpose()?;
        Ok(VendorSettings {
            base_url,
            api_key,
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            max_response_bytes: usize::try_from(self.max_response_bytes).unwrap_or(usize::MAX),
            http2_prior_knowledge: self.http2_prior_knowledge,
            pool_idle_timeout: self.pool_idle_timeout,
            ca_pem,
        })
    }

    /// What is wrong with these settings on their own, each problem
    /// naming its key (without the `vendor.` its section adds). Reads
    /// `ca_file`.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (name, zero) in [
            ("connect_timeout_ms", self.connect_timeout.is_zero()),
            ("timeout_ms", self.timeout.is_zero()),
            ("max_response_bytes", self.max_response_bytes == 0),
            ("breaker_window_ms", self.breaker_window.is_zero()),
            ("breaker_open_ms", self.breaker_open.is_zero()),
        ] {
            if zero {
                p.push(format!("{name} must be greater than 0"));
            }
        }
        if let Some(url) = &self.base_url {
            if let Err(e) = http_url(url) {
                p.push(format!("base_url: {e}"));
            }
            if self.api_key.is_none() {
                p.push(
                    "api_key (or vendor.api_key_file) is required when vendor.base_url is set"
                        .into(),
                );
            }
        }
        if !(0.0..=1.0).contains(&self.breaker_failure_ratio) {
            p.push("breaker_failure_ratio must be between 0.0 and 1.0".into());
        }
        if !(0.0..=1.0).contains(&self.retry_budget_ratio) {
            p.push("retry_budget_ratio must be between 0.0 and 1.0".into());
        }
        if let Some(ca) = &self.ca_file {
            match std::fs::read_to_string(ca) {
                Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => {}
                Ok(_) => p.push(format!("ca_file {} holds no PEM certificate", ca.display())),
                Err(e) => p.push(format!("ca_file {}: {e}", ca.display())),
            }
        }
        p
    }

    /// When the circuit opens, and for how long.
    pub fn breaker(&self) -> BreakerSettings {
        BreakerSettings {
            consecutive_failures: self.breaker_consecutive_failures,
            failure_ratio: self.breaker_failure_ratio,
            min_requests: self.breaker_min_requests,
            window: self.breaker_window,
            open_for: self.breaker_open,
            ..BreakerSettings::default()
        }
    }

    /// The budget of retries after a failed connect (none at 0).
    pub fn retry(&self) -> RetrySettings {
        RetrySettings {
            retry_ratio: self.retry_budget_ratio as f32,
            min_retries_per_sec: if self.retry_budget_ratio > 0.0 { 1 } else { 0 },
            ..RetrySettings::default()
        }
    }

    /// The vendor service: `[breaker] -> [retry] -> client`. The breaker is
    /// outermost so that it sees one outcome per call, retried or not; the
    /// retry only repeats a call whose connection failed, so nothing was
    /// sent.
    pub fn stack(&self, client: VendorClient) -> (VendorStack, BreakerHandle) {
        let breaker = CircuitBreakerLayer::new(self.breaker());
        let handle = breaker.handle();
        let stack = ServiceBuilder::new()
            .layer(breaker)
            .layer(ConnectRetryLayer::new(self.retry()))
            .service(client);
        (stack, handle)
    }
}

/// An `http` or `https` URL with a host and no query.
fn http_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| "not a URL".to_string())?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err("scheme must be http or https".into()),
    }
    if uri.host().is_none() {
        return Err("no host".into());
    }
    if uri.query().is_some() {
        return Err("must not have a query".into());
    }
    Ok(())
}
