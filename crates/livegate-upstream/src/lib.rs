//! The vendor client.
//!
//! Owns the one outbound call of the gateway: `POST {base}/modules/liveness`
//! with the vendor key added here (the only place it is ever put on the
//! wire), over a pooled hyper client speaking HTTP/1.1 or HTTP/2 (ALPN over
//! rustls, or h2c by prior knowledge), with a connect timeout and a total
//! timeout covering the whole exchange. The request is built from scratch
//! — content type, vendor key, user agent, body — so nothing the client sent
//! (its tenant key, cookies, hop-by-hop headers) can reach the vendor.
//!
//! It checks that the answer is a JSON object of bounded size, pulls out
//! the `transactionId` and `liveness_score`, and maps failures onto
//! [`livegate_core::ErrorKind`]. It does not retry (a liveness call is paid
//! for, and not idempotent from the bill's point of view) and it does not
//! decide what the client sees beyond that: the vendor's status and body are
//! handed back unchanged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use livegate_core::ErrorKind;

/// What the client needs to know about the vendor.
#[derive(Clone)]
pub struct VendorSettings {
    /// e.g. `https://vendor.example.com` (a trailing `/` is fine).
    pub base_url: String,
    pub api_key: String,
    pub connect_timeout: Duration,
    /// The whole exchange: connect, send, and read the full answer.
    pub timeout: Duration,
    pub max_response_bytes: usize,
    /// h2c without negotiation (for plain-HTTP vendors or sidecars that speak HTTP/2).
    pub http2_prior_knowledge: bool,
    pub pool_idle_timeout: Duration,
    /// Extra trusted CA certificates (PEM), on top of the Mozilla root set
    /// built in: for a vendor (or egress proxy) behind a private PKI.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for VendorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &"[redacted]")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why a vendor call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("vendor url is invalid")]
    InvalidUrl,
    #[error("tls setup failed: {0}")]
    Tls(String),
    #[error("vendor unreachable: {0}")]
    Unreachable(String),
    #[error("vendor timed out")]
    Timeout,
    #[error("vendor answered an invalid response: {0}")]
    BadResponse(&'static str),
    #[error("vendor rejected the gateway's credentials (HTTP {0})")]
    Auth(u16),
}

impl UpstreamError {
    /// The error the client gets.
    pub fn kind(&self) -> ErrorKind {
        match self {
            UpstreamError::InvalidUrl | UpstreamError::Tls(_) => ErrorKind::Internal,
            UpstreamError::Unreachable(_) => ErrorKind::VendorUnreachable,
            UpstreamError::Timeout => ErrorKind::VendorTimeout,
            UpstreamError::BadResponse(_) => ErrorKind::VendorBadResponse,
            UpstreamError::Auth(_) => ErrorKind::VendorAuth,
        }
    }
}

/// The vendor's answer, to be passed to the client unchanged.
#[derive(Debug, Clone)]
pub struct VendorResponse {
    pub status: StatusCode,
    pub body: Bytes,
    /// The vendor's `transactionId`, when it is a plain token (safe for a header).
    pub transaction_id: Option<String>,
    /// `result.liveness_score`, when present.
    pub liveness_score: Option<f64>,
    /// The vendor's `errorCode`, when present.
    pub error_code: Option<i64>,
    /// Time from sending to the last byte of the answer.
    pub elapsed: Duration,
}

/// A cheap-to-clone pooled client for the vendor.
#[derive(Clone)]
pub struct VendorClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoint: Uri,
    api_key: HeaderValue,
    timeout: Duration,
    max_response_bytes: usize,
}

const PATH: &str = "modules/liveness";

impl VendorClient {
    /// Builds the client; no connection is made until the first call.
    pub fn new(settings: &VendorSettings) -> Result<Self, UpstreamError> {
        let base = settings.base_url.trim_end_matches('/');
        let endpoint: Uri = format!("{base}/{PATH}")
            .parse()
            .map_err(|_| UpstreamError::InvalidUrl)?;
        if !matches!(endpoint.scheme_str(), Some("http" | "https")) {
            return Err(UpstreamError::InvalidUrl);
        }
        let mut api_key =
            HeaderValue::from_str(&settings.api_key).map_err(|_| UpstreamError::InvalidUrl)?;
        // Keeps the value out of HPACK tables and out of debug output.
        api_key.set_sensitive(true);

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(settings.ca_pem.as_deref())?)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .http2_only(settings.http2_prior_knowledge)
            .build(https);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                endpoint,
                api_key,
                timeout: settings.timeout,
                max_response_bytes: settings.max_response_bytes,
            }),
        })
    }

    /// The URL called, for logs (it holds no secret).
    pub fn endpoint(&self) -> &Uri {
        &self.inner.endpoint
    }

    /// Sends one liveness request whose JSON body is `body`.
    pub async fn call(&self, body: Bytes) -> Result<VendorResponse, UpstreamError> {
        let inner = &*self.inner;
        let started = Instant::now();
        let exchange = async {
            let req = Request::builder()
                .method(Method::POST)
                .uri(inner.endpoint.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header(
                    USER_AGENT,
                    HeaderValue::from_static(concat!("livegate/", env!("CARGO_PKG_VERSION"))),
                )
                .header("x-api-key", inner.api_key.clone())
                .body(Full::new(body))
                .map_err(|_| UpstreamError::InvalidUrl)?;
            let res = inner
                .client
                .request(req)
                .await
                .map_err(|e| UpstreamError::Unreachable(describe(&e)))?;
            let status = res.status();
            let body = Limited::new(res.into_body(), inner.max_response_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        UpstreamError::BadResponse("answer too large")
                    } else {
                        UpstreamError::Unreachable(
                            "connection lost while reading the answer".into(),
                        )
                    }
                })?
                .to_bytes();
            Ok::<_, UpstreamError>((status, body))
        };
        let (status, body) = tokio::time::timeout(inner.timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        let elapsed = started.elapsed();

        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(UpstreamError::Auth(status.as_u16()));
        }
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(&body)
        else {
            return Err(UpstreamError::BadResponse("not a JSON object"));
        };
        let transaction_id = map
            .get("transactionId")
            .and_then(|v| v.as_str())
            .filter(|t| is_token(t))
            .map(str::to_owned);
        let liveness_score = map
            .get("result")
            .and_then(|r| r.get("liveness_score"))
            .and_then(|s| s.as_f64());
        let error_code = map.get("errorCode").and_then(|c| c.as_i64());
        Ok(VendorResponse {
            status,
            body,
            transaction_id,
            liveness_score,
            error_code,
            elapsed,
        })
    }
}

/// Mozilla's roots plus the configured extra CAs; TLS 1.2 and 1.3 with
/// certificate verification always on.
fn tls_config(extra_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, UpstreamError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| UpstreamError::Tls(format!("ca_file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| UpstreamError::Tls(format!("ca_file: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(UpstreamError::Tls(
                "ca_file holds no PEM certificate".into(),
            ));
        }
    }
    // ring explicitly: the process never depends on which rustls provider
    // another crate's features happened to switch on.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A transactionId goes into a response header and the audit log, so
/// only a short plain token is taken from the vendor's answer.
fn is_token(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn describe(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
