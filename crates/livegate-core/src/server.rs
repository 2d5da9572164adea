//! `[server]`: listeners, the connection edge and request admission. Read
//! by the binary's accept loop (the edge) and by [`Admission`]; the
//! configuration crate only checks it against the other sections.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::admission::{Admission, UploadFloor};
use crate::serde_duration::millis;

/// Most threads `server.blocking_threads` may ask for.
pub const MAX_BLOCKING_THREADS: usize = 512;

/// Listeners, the connection edge and request handling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Public listener (the liveness route, /livez, /readyz).
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: u64,
    /// How long a client may take to send its body.
    #[serde(rename = "body_read_timeout_ms", with = "millis")]
    pub body_read_timeout: Duration,
    /// A connection must deliver a complete request head within this long:
    /// from accept for its first byte, then from its first byte; an idle
    /// HTTP/1.1 keep-alive connection is closed after this long too.
    #[serde(rename = "header_read_timeout_ms", with = "millis")]
    pub header_read_timeout: Duration,
    /// An HTTP/2 connection with no request in flight is closed after this long.
    #[serde(rename = "idle_timeout_ms", with = "millis")]
    pub idle_timeout: Duration,
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
    #[serde(rename = "upload_grace_ms", with = "millis")]
    pub upload_grace: Duration,
    /// The window the upload rate is averaged over.
    #[serde(rename = "upload_rate_window_ms", with = "millis")]
    pub upload_rate_window: Duration,
    /// After an answer sent before the body was read, how long the rest of
    /// the body is read and discarded (a lingering close) at most.
    #[serde(rename = "lingering_timeout_ms", with = "millis")]
    pub lingering_timeout: Duration,
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
    #[serde(rename = "shutdown_delay_ms", with = "millis")]
    pub shutdown_delay: Duration,
    /// Then, how long in-flight requests may take to finish.
    #[serde(rename = "drain_timeout_ms", with = "millis")]
    pub drain_timeout: Duration,
    /// TLS on the public listener: certificate chain (PEM); with `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// TLS private key (PEM); reloaded with the certificate when either changes.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            body_limit_bytes: 10 * 1024 * 1024,
            body_read_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_header_bytes: 16 * 1024,
            http2_max_concurrent_streams: 100,
            max_inflight_requests: 512,
            inflight_body_budget_bytes: 256 * 1024 * 1024,
            tenant_body_share: 0.25,
            min_upload_bytes_per_second: 64 * 1024,
            upload_grace: Duration::from_secs(2),
            upload_rate_window: Duration::from_secs(1),
            lingering_timeout: Duration::from_secs(5),
            lingering_bytes: None,
            blocking_threshold_bytes: 512 * 1024,
            blocking_threads: None,
            shutdown_delay: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl ServerSettings {
    /// `blocking_threads`, or two per CPU the process may use.
    pub fn blocking_threads(&self) -> usize {
        self.blocking_threads
            .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// What is wrong with these settings on their own, each problem
    /// naming its key (without the `server.` its section adds).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.body_limit_bytes == 0 || self.body_limit_bytes > 64 * 1024 * 1024 {
            p.push("body_limit_bytes must be between 1 and 67108864 (64 MiB)".into());
        }
        if self.inflight_body_budget_bytes < self.body_limit_bytes.saturating_mul(5) / 2 {
            p.push("inflight_body_budget_bytes must hold at least one request at the body limit (2.5 x server.body_limit_bytes)".into());
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            p.push("tls_cert_file and server.tls_key_file go together: set both or neither".into());
        }
        if self
            .blocking_threads
            .is_some_and(|n| !(1..=MAX_BLOCKING_THREADS).contains(&n))
        {
            p.push(format!(
                "blocking_threads must be between 1 and {MAX_BLOCKING_THREADS}"
            ));
        }
        if !(self.tenant_body_share > 0.0 && self.tenant_body_share <= 1.0) {
            p.push("tenant_body_share must be above 0 and at most 1".into());
        }
        if self.max_header_bytes < 1024 {
            p.push("max_header_bytes must be at least 1024".into());
        }
        for (name, zero) in [
            ("max_connections", self.max_connections == 0),
            ("max_inflight_requests", self.max_inflight_requests == 0),
            (
                "http2_max_concurrent_streams",
                self.http2_max_concurrent_streams == 0,
            ),
            ("header_read_timeout_ms", self.header_read_timeout.is_zero()),
            ("idle_timeout_ms", self.idle_timeout.is_zero()),
            ("body_read_timeout_ms", self.body_read_timeout.is_zero()),
            ("drain_timeout_ms", self.drain_timeout.is_zero()),
            ("upload_grace_ms", self.upload_grace.is_zero()),
            ("upload_rate_window_ms", self.upload_rate_window.is_zero()),
        ] {
            if zero {
                p.push(format!("{name} must be greater than 0"));
            }
        }
        p
    }

    /// `lingering_bytes`, or the body limit.
    pub fn lingering_bytes(&self) -> u64 {
        self.lingering_bytes.unwrap_or(self.body_limit_bytes)
    }

    /// The body limit as a length in memory.
    pub fn body_limit(&self) -> usize {
        usize::try_from(self.body_limit_bytes).unwrap_or(usize::MAX)
    }

    /// `https` when the public listener serves TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert_file.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The admission of liveness requests these settings describe: requests
    /// and body bytes in flight, the tenant share, the upload-rate floor.
    pub fn admission(&self) -> Arc<Admission> {
        Admission::with(
            self.max_inflight_requests,
            usize::try_from(self.inflight_body_budget_bytes).unwrap_or(usize::MAX),
            self.tenant_body_share,
            Some(UploadFloor {
                bytes_per_second: self.min_upload_bytes_per_second,
                grace: self.upload_grace,
                window: self.upload_rate_window,
            }),
        )
    }
}
