//! Settings, the pooled client and its `Service` impl.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, PROXY_AUTHORIZATION, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE, USER_AGENT,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use livegate_core::Secret;

use crate::answer::{self, VendorAnswer};
use crate::{UpstreamError, tls};

/// What the client needs to know about the vendor.
#[derive(Clone)]
pub struct VendorSettings {
    /// e.g. `https://vendor.example.com` (a trailing `/` is fine).
    pub base_url: String,
    /// Sent as `x-api-key` on every call.
    pub api_key: Secret,
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

// Hand-written so that logging the settings can never print the vendor key.
impl fmt::Debug for VendorSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &"[redacted]")
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("http2_prior_knowledge", &self.http2_prior_knowledge)
            .finish_non_exhaustive()
    }
}

/// The vendor's answer.
#[derive(Debug, Clone)]
pub struct VendorResponse {
    pub status: StatusCode,
    /// The vendor's JSON body, unchanged, to hand back to the client.
    pub body: Bytes,
    /// Typed facts read from `body`.
    pub answer: VendorAnswer,
    /// From sending the request to the last byte of the answer.
    pub elapsed: Duration,
}

/// A cheap-to-clone pooled client for the vendor; see the crate docs.
#[derive(Clone)]
pub struct VendorClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for VendorClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorClient")
            .field("endpoint", &self.inner.endpoint)
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoint: Uri,
    /// Marked sensitive: kept out of HPACK tables and debug output.
    api_key: HeaderValue,
    timeout: Duration,
    max_response_bytes: usize,
}

const PATH: &str = "modules/liveness";

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Request headers never forwarded: the ones this client sets itself
/// (content type, user agent, vendor key), framing and hop-by-hop headers
/// that belong to the connection rather than the request (RFC 9110 §7.6.1,
/// and HTTP/2 refuses most of them), and credentials, so that a tenant's
/// key or cookie cannot reach the vendor whatever the stack puts on the
/// request.
const NOT_FORWARDED: [HeaderName; 15] = [
    HOST,
    CONTENT_LENGTH,
    TRANSFER_ENCODING,
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TE,
    TRAILER,
    UPGRADE,
    X_API_KEY,
    AUTHORIZATION,
    PROXY_AUTHORIZATION,
    COOKIE,
    CONTENT_TYPE,
    USER_AGENT,
];

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
        let mut api_key = HeaderValue::from_str(settings.api_key.expose())
            .map_err(|_| UpstreamError::InvalidUrl)?;
        api_key.set_sensitive(true);

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config(settings.ca_pem.as_deref())?)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .http2_only(settings.http2_prior_knowledge)
            // The default, said out loud: a request that meets a pooled
            // connection the vendor closed before the request was written
            // is sent again on a fresh one. Nothing was sent, so it is safe;
            // every other failure is left to the layers around the client.
            .retry_canceled_requests(true)
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
}

/// One liveness call: `POST {endpoint}` with the request's body as is and
/// its headers filtered as the [crate docs](crate#what-reaches-the-vendor)
/// say. The request's method, URI, version and extensions are ignored.
impl tower::Service<Request<Bytes>> for VendorClient {
    type Response = VendorResponse;
    type Error = UpstreamError;
    type Future = ResponseFuture;

    /// Always ready: the hyper pool queues internally.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        ResponseFuture {
            inner: Box::pin(async move { inner.send(req).await }),
        }
    }
}

impl Inner {
    async fn send(&self, req: Request<Bytes>) -> Result<VendorResponse, UpstreamError> {
        let (parts, body) = req.into_parts();
        let mut out = Request::new(Full::new(body));
        *out.method_mut() = Method::POST;
        *out.uri_mut() = self.endpoint.clone();
        *out.headers_mut() = self.forwarded(parts.headers);

        let started = Instant::now();
        let exchange = async {
            let res = self.client.request(out).await.map_err(|e| {
                // The connector (TCP connect, TLS handshake) failed:
                // not a byte of the request was written.
                if e.is_connect() {
                    UpstreamError::ConnectFailed(describe(&e))
                } else {
                    UpstreamError::Unreachable(describe(&e))
                }
            })?;
            let status = res.status();
            let body = Limited::new(res.into_body(), self.max_response_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
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
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        let elapsed = started.elapsed();

        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(UpstreamError::Auth(status.as_u16()));
        }
        let answer =
            answer::parse(&body).map_err(|_| UpstreamError::BadResponse("not a JSON object"))?;
        Ok(VendorResponse {
            status,
            body,
            answer,
            elapsed,
        })
    }

    /// The request's headers minus the ones never forwarded, plus the
    /// client's own. Reuses the request's map: no copy for the common case.
    fn forwarded(&self, mut headers: HeaderMap) -> HeaderMap {
        // Headers a `Connection` header names are hop-by-hop too.
        let nominated: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in nominated.iter().chain(&NOT_FORWARDED) {
            headers.remove(name);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("livegate/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(X_API_KEY, self.api_key.clone());
        headers
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<VendorResponse, UpstreamError>> + Send>>;

/// The future of [`VendorClient`]'s `Service::call`.
pub struct ResponseFuture {
    inner: BoxFuture,
}

impl Future for ResponseFuture {
    type Output = Result<VendorResponse, UpstreamError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// The error's sources, e.g. "tcp connect error: connection refused (os
/// error 111)" or "invalid peer certificate: UnknownIssuer". hyper_util's
/// own top line ("client error (Connect)") is left out: the variant says
/// it. Each part starts lowercase, as our messages do; no header or body is
/// ever in them.
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(lowercase_first(&s.to_string()));
        source = s.source();
    }
    if parts.is_empty() {
        // No source: hyper_util's own message is all there is.
        parts.push(e.to_string());
    }
    parts.join(": ")
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        // "Connection refused" but not "TLS" or "UnknownIssuer".
        Some(first) if !chars.clone().next().is_some_and(char::is_uppercase) => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => s.to_owned(),
    }
}
