//! The whole request stack, composed in one place.
//!
//! The liveness route, outermost first (each position says why):
//! 1. [`ExchangeLayer`] — creates the request's exchange record, renders
//!    every typed error into the documented response (the one renderer),
//!    catches panics, and emits the record exactly once: it is outermost so
//!    that every request, 401s and panics included, gets one.
//! 2. [`AuditLayer`](livegate_audit::AuditLayer) — reserves the request's audit record a place before
//!    anything else happens: when the audit sink is stuck, the request waits
//!    up to `audit.max_wait_ms`, then gets 503 (50305) — before any vendor
//!    call, so nothing is ever served unaudited. Inside the exchange layer,
//!    so the refusal has its record (and error rendering) too.
//! 3. [`AuthLayer`] — the tenant key, before any of the body is read, so an
//!    unauthenticated client cannot make the gateway buffer a 10 MB upload.
//! 4. [`RateLimitLayer`] — the tenant's rate and monthly quota (429 with
//!    `Retry-After`), still before the body is read, so a limited tenant's
//!    upload is never buffered; sets the `RateLimit-*` headers every later
//!    answer carries.
//! 5. [`AdmissionLayer`] — caps liveness requests in flight and the body
//!    bytes they hold: a request that does not fit gets 503 with
//!    `Retry-After` before any of its body is read. After auth, so an
//!    unauthenticated flood cannot take the slots of real tenants.
//! 6. [`PayloadLayer`] — reads the body (bounded by the limit and the read
//!    timeout; a declared length over the limit is refused unread), checks
//!    and normalizes the image with the tenant's policy: every refusal
//!    happens before the vendor, who bills per call, is contacted.
//! 7. [`ProtectLayer`] — liveness-aware protection with the tenant's
//!    policy: `Idempotency-Key` (a stored answer is served here, before
//!    any vendor call), the perceptual hash and metadata removal (on the
//!    blocking pool), replay detection (`reject` refuses here, before the
//!    vendor); after the answer, the image is remembered, the score
//!    decision added and the answer stored. After the payload layer,
//!    because it works on the accepted, decoded image; the last layer
//!    before the vendor, so that every cheaper refusal came first.
//! 8. [`Forward`] around the vendor service — the vendor's answer becomes
//!    the client's response. Layers around the vendor client itself
//!    (circuit breaker, upstream span, `traceparent`) go between 8 and the
//!    client, in [`router_with`]'s `vendor` argument.
//!
//! Around every route: the request id (kept from a client only when it is a
//! plain token), a span per request, and a panic catcher for the probes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post_service};
use bytes::Bytes;
use http::{Extensions, HeaderMap, Request, Response, StatusCode};
use livegate_audit::Audit;
use livegate_auth::{AuthLayer, Authenticator, KeyStore, Principal};
use livegate_config::{FailMode, Mode};
use livegate_core::admission::{Admission, AdmissionLayer};
use livegate_core::exchange::{Exchange, ExchangeLayer, ExchangeSink};
use livegate_core::single_headers::SingleHeadersLayer;
use livegate_core::{Clock, ErrorKind, error_response, request_id};
use livegate_metrics::Metrics;
use livegate_payload::{ImagePolicy, PayloadLayer};
use livegate_protect::store::{IdempotencyStore, ReplayStore};
use livegate_protect::{ProtectLayer, ProtectionPolicy, ReplayMode, capture_idempotency_key};
use livegate_ratelimit::{Limit, Limiter, RateLimitLayer, limit_of};
use livegate_upstream::{BreakerHandle, UpstreamError, VendorResponse};
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, NeverClassifyEos, ServerErrorsAsFailures,
    ServerErrorsFailureClass, SharedClassifier,
};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, OnResponse, TraceLayer};
use tracing::Level;

use crate::forward::Forward;
use crate::request_id::{RandomRequestId, drop_untrusted_id};
use crate::trace::trace_id_of;

/// Everything the request path needs, built once by [`crate::runtime`].
#[derive(Clone)]
pub struct Gateway {
    pub authenticator: Authenticator,
    /// The store behind the authenticator, for its health.
    pub store: Arc<dyn KeyStore>,
    /// The deployment's image policy; tenants' overrides apply on top.
    pub images: ImagePolicy,
    /// Liveness-aware protection: the deployment's policy and its stores.
    pub protection: Protection,
    /// The vendor service, its circuit and where it calls.
    pub vendor: Vendor,
    /// How request bodies are read and where images are worked on.
    pub body: BodyHandling,
    /// Concurrent liveness requests and in-flight body bytes.
    pub admission: Arc<Admission>,
    /// Tenants' rates and quotas.
    pub limits: Limits,
    /// What the gateway answers with.
    pub mode: Mode,
    /// `redis.fail_mode`: with [`FailMode::Closed`] an unreachable store
    /// fails readiness and protection refuses.
    pub fail_mode: FailMode,
    pub health: Health,
    /// Where exchange records go (the log line, the metrics, the audit trail).
    pub sink: Arc<dyn ExchangeSink>,
    /// `https` when the public listener serves TLS, else `http` (for spans).
    pub scheme: &'static str,
    /// The Prometheus metrics (also one of the sinks).
    pub metrics: Arc<Metrics>,
    /// The audit trail (also one of the sinks): its layer reserves each
    /// request's record a place.
    pub audit: Audit,
    pub clock: Arc<dyn Clock>,
}

/// Liveness-aware protection: the deployment's `[protection]` (tenants'
/// overrides apply on top) and where it keeps fingerprints and idempotent
/// answers (one object in practice: memory or Redis).
#[derive(Clone)]
pub struct Protection {
    pub policy: ProtectionPolicy,
    pub replay: Arc<dyn ReplayStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// How long an idempotency claim outlives a replica that died holding it.
    pub lease: Duration,
}

/// The vendor.
#[derive(Clone)]
pub struct Vendor {
    /// The vendor client behind its circuit breaker and safe retry.
    pub stack: VendorStack,
    /// The circuit's state, for `/readyz` and `/metrics`.
    pub breaker: BreakerHandle,
    /// Where the client sends liveness calls (for the client span).
    pub endpoint: http::Uri,
}

/// How a liveness request's body is read and its image worked on.
#[derive(Clone, Copy, Debug)]
pub struct BodyHandling {
    pub limit: usize,
    pub read_timeout: Duration,
    /// Bodies larger than this are decoded and hashed on the blocking pool.
    pub blocking_above: usize,
    /// Images fingerprinted at once, at most.
    pub image_concurrency: usize,
}

/// Tenants' rates and quotas.
#[derive(Clone)]
pub struct Limits {
    pub limiter: Arc<dyn Limiter>,
    /// The limit of a tenant that sets none; `None`: such tenants are not
    /// rate-limited.
    pub default: Option<Limit>,
    /// The gateway-wide cap over all tenants, if any.
    pub global: Option<Limit>,
}

/// The vendor service the stack calls: breaker, then connect retry, then client.
pub use livegate_upstream::VendorStack;

/// Readiness, shared with the server so draining takes the replica out of
/// rotation before connections close.
#[derive(Clone, Debug, Default)]
pub struct Health {
    draining: Arc<AtomicBool>,
}

impl Health {
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// The public router, calling the gateway's vendor client.
pub fn router(gw: &Gateway) -> Router {
    router_with(gw, gw.vendor.stack.clone())
}

/// The public router with `vendor` as the vendor service (the client, or
/// the client wrapped in further layers).
pub fn router_with<V>(gw: &Gateway, vendor: V) -> Router
where
    V: Service<Request<Bytes>, Response = VendorResponse, Error = UpstreamError>
        + Clone
        + Send
        + Sync
        + 'static,
    V::Future: Send + 'static,
{
    let images = gw.images;
    let protection = gw.protection.policy;
    let default_rate = gw.limits.default;
    let liveness = ServiceBuilder::new()
        .layer(ExchangeLayer::new(gw.sink.clone(), gw.clock.clone()))
        // The trace the request belongs to, for its audit record.
        .map_request(|req: Request<Body>| {
            if let Some(x) = Exchange::of(&req) {
                if let Some(t) = trace_id_of(&tracing::Span::current(), req.headers()) {
                    x.set_trace_id(t);
                }
            }
            req
        })
        .layer(gw.audit.layer())
        // Before anything reads them: which copy of a repeated key,
        // Idempotency-Key or traceparent wins is not guessed (400).
        .layer(SingleHeadersLayer)
        .map_request(|mut req: Request<Body>| {
            // The payload layer passes extensions, not headers.
            capture_idempotency_key(&mut req);
            req
        })
        .layer(AuthLayer::new(gw.authenticator.clone()))
        .layer(
            RateLimitLayer::new(gw.limits.limiter.clone(), move |ext| {
                tenant_limit(default_rate, ext)
            })
            .global(gw.limits.global),
        )
        .layer(
            AdmissionLayer::new(gw.admission.clone())
                .tenant(|ext| Some(ext.get::<Principal>()?.tenant.id.clone())),
        )
        .layer(
            PayloadLayer::new(gw.body.limit, gw.body.read_timeout)
                .blocking_above(gw.body.blocking_above)
                .policy(move |ext| tenant_policy(&images, ext))
                .keep_image(move |ext| {
                    let p = tenant_protection(&protection, ext);
                    p.replay != ReplayMode::Off || p.strip_metadata
                }),
        )
        .layer(
            ProtectLayer::new(
                gw.protection.replay.clone(),
                gw.protection.idempotency.clone(),
                move |ext| {
                    let p = ext.get::<Principal>()?;
                    Some((
                        p.tenant.id.clone(),
                        protection.with(&p.tenant.settings.protection),
                    ))
                },
            )
            .fail_closed(gw.fail_mode == FailMode::Closed)
            .blocking_above(gw.body.blocking_above)
            .image_concurrency(gw.body.image_concurrency)
            .memory_budget(gw.admission.clone())
            .lease(gw.protection.lease),
        )
        .service(Forward::new(vendor, gw.vendor.endpoint.clone()));

    let routes = Router::new()
        .route("/modules/liveness", post_service(liveness))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(gw.clone());
    around_every_route(routes, gw.scheme)
}

/// What every route of either listener gets: the request id, a span, JSON
/// 404/405 answers and a panic catcher.
fn around_every_route(routes: Router, scheme: &'static str) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                // Only plain-token ids from clients are kept, then every
                // request gets one and every response echoes it.
                .map_request(drop_untrusted_id)
                .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
                .layer(PropagateRequestIdLayer::x_request_id())
                // Request spans at INFO (tower-http's default is DEBUG, which
                // an `info` filter would drop). Only known paths, never the
                // query string or headers: a confused client may put a key
                // anywhere. The liveness route logs its exchange record;
                // the plain response line is for debugging.
                .layer(
                    TraceLayer::new(SharedClassifier::new(Failures))
                        .make_span_with(move |req: &Request<Body>| request_span(req, scheme))
                        .on_response(RecordStatus),
                )
                // The liveness route catches its own panics (with its
                // record); this answers for the probes and the admin API,
                // in the same shape.
                .layer(CatchPanicLayer::custom(|_| {
                    tracing::error!("request handler panicked");
                    error_response::<Body>(ErrorKind::Internal, "")
                })),
        )
}

/// Records the response status on the request's span (OpenTelemetry's
/// `http.response.status_code`; 5xx also marks the span as an error) and
/// logs the response line at DEBUG.
#[derive(Clone, Copy, Debug)]
struct RecordStatus;

impl<B> OnResponse<B> for RecordStatus {
    fn on_response(self, res: &Response<B>, latency: Duration, span: &tracing::Span) {
        livegate_telemetry::record_status(span, res.status());
        DefaultOnResponse::new()
            .level(Level::DEBUG)
            .on_response(res, latency, span);
    }
}

/// The operations listener's router: `/metrics`, the admin API when there
/// is one, and JSON 404/405 for everything else. Never merged into the
/// public router.
pub fn ops_router(gw: &Gateway, admin: Option<livegate_admin::AdminApi>) -> Router {
    let mut routes = Router::new()
        .route("/metrics", get(metrics))
        .with_state(gw.clone());
    if let Some(api) = admin {
        routes = routes.merge(livegate_admin::router(api));
    }
    around_every_route(routes, "http")
}

fn audit_state(audit: &Audit) -> livegate_metrics::AuditState {
    let a = audit.stats();
    livegate_metrics::AuditState {
        capacity: a.capacity as u64,
        queued: a.queued,
        written: a.written_total,
        waits: a.waits_total,
        refusals: a.refused_total,
        unwritten: a.unwritten_total,
        write_errors: a.write_errors_total,
        failing: a.failing,
    }
}

/// Prometheus text: the records' counters, and the parts' state read now.
async fn metrics(State(gw): State<Gateway>) -> Response<Body> {
    let (in_flight, body_bytes) = gw.admission.in_flight();
    let limiter = gw.limits.limiter.health();
    let state = livegate_metrics::State {
        in_flight_requests: in_flight as u64,
        in_flight_body_bytes: body_bytes as u64,
        admission_refusals: gw.admission.refused(),
        circuit: gw.vendor.breaker.state().as_str(),
        limiter_backend: limiter.backend,
        limiter_mode: limiter.mode,
        limiter_redis_errors: limiter.errors,
        key_store_ok: gw.store.health().await.ok,
        audit: Some(audit_state(&gw.audit)),
    };
    let mut res = Response::new(Body::from(gw.metrics.encode(state)));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(livegate_metrics::CONTENT_TYPE),
    );
    res
}

/// The tenant's rate and quota: its own settings, else the deployment's
/// default rate; `None` when neither limits it.
fn tenant_limit(default_rate: Option<Limit>, ext: &Extensions) -> Option<(String, Limit)> {
    let p = ext.get::<Principal>()?;
    let s = &p.tenant.settings;
    let limit = limit_of(s.rate_per_second, s.burst, s.monthly_quota, default_rate)?;
    Some((p.tenant.id.clone(), limit))
}

/// The tenant's image policy: the deployment's with the tenant's changes.
fn tenant_policy(default: &ImagePolicy, ext: &Extensions) -> ImagePolicy {
    ext.get::<Principal>()
        .map_or(*default, |p| default.with(&p.tenant.settings.images))
}

/// The tenant's protection: the deployment's with the tenant's changes.
fn tenant_protection(default: &ProtectionPolicy, ext: &Extensions) -> ProtectionPolicy {
    ext.get::<Principal>()
        .map_or(*default, |p| default.with(&p.tenant.settings.protection))
}

/// The span every request's logs carry. The liveness route's is an
/// OpenTelemetry HTTP server span continuing the client's `traceparent`;
/// `tenant` and `key_id` are filled in by the auth layer, the outcome,
/// transactionId and score by [`SpanSink`](crate::trace::SpanSink). The
/// probes' and `/metrics`' spans are DEBUG: no trace per probe.
fn request_span<B>(req: &http::Request<B>, scheme: &'static str) -> tracing::Span {
    let rid = request_id(req.headers());
    let path = match req.uri().path() {
        "/modules/liveness" => {
            let span = livegate_telemetry::server_span(req.method(), "/modules/liveness", scheme);
            livegate_telemetry::set_parent_from_headers(&span, req.headers());
            span.record("request_id", rid);
            if let Some(t) = trace_id_of(&span, req.headers()) {
                span.record("trace_id", t.as_str());
            }
            return span;
        }
        p @ ("/livez" | "/readyz" | "/metrics") => {
            return tracing::debug_span!(
                "request",
                method = livegate_telemetry::method_name(req.method()),
                path = p,
                request_id = rid
            );
        }
        p if p.starts_with("/admin/") => "admin",
        _ => "other",
    };
    tracing::info_span!(
        "request",
        method = livegate_telemetry::method_name(req.method()),
        path,
        request_id = rid,
    )
}

async fn livez() -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

async fn readyz(State(gw): State<Gateway>) -> Response<Body> {
    // The vendor is deliberately not checked: a vendor outage must not take
    // every replica out of service; its circuit is reported, never failing
    // readiness. The key store is reported, and fails readiness only with
    // `redis.fail_mode = "closed"`.
    let store = gw.store.health().await;
    let limiter = gw.limits.limiter.health();
    // Reported, never failing readiness: a stuck sink refuses requests
    // itself (503 50305), and every replica shares the sink's fate.
    let audit = gw.audit.stats();
    let (status, state) = if gw.health.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if gw.fail_mode == FailMode::Closed && (!store.ok || !limiter.ok) {
        (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
    } else {
        (StatusCode::OK, "ready")
    };
    let body = serde_json::json!({
        "status": state,
        "mode": gw.mode,
        "keyStore": store,
        "rateLimiter": limiter,
        "vendorCircuit": gw.vendor.breaker.state().as_str(),
        "audit": {
            "sink": gw.audit.sink_kind(),
            "failing": audit.failing,
            "queued": audit.queued,
        },
    });
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if state == "draining" {
        // A normal state, logged once when the drain began: not an error.
        res.extensions_mut().insert(Expected503);
    }
    res
}

/// Marks a 503 that is not a failure (readiness while draining), so the
/// request span does not log an `ERROR … response failed` per probe.
#[derive(Clone, Copy, Debug)]
struct Expected503;

/// tower-http's 5xx-as-failure classification, except for [`Expected503`].
#[derive(Clone, Copy, Debug, Default)]
struct Failures;

impl ClassifyResponse for Failures {
    type FailureClass = ServerErrorsFailureClass;
    type ClassifyEos = NeverClassifyEos<ServerErrorsFailureClass>;

    fn classify_response<B>(
        self,
        res: &Response<B>,
    ) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        if res.extensions().get::<Expected503>().is_some() {
            return ClassifiedResponse::Ready(Ok(()));
        }
        ServerErrorsAsFailures::new().classify_response(res)
    }

    fn classify_error<E: std::fmt::Display + 'static>(self, error: &E) -> Self::FailureClass {
        ServerErrorsAsFailures::new().classify_error(error)
    }
}

async fn not_found(headers: HeaderMap) -> Response<Body> {
    error_response(ErrorKind::NotFound, request_id(&headers))
}

async fn method_not_allowed(headers: HeaderMap) -> Response<Body> {
    error_response(ErrorKind::MethodNotAllowed, request_id(&headers))
}
