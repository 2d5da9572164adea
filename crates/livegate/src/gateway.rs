//! The whole request stack, composed in one place.
//!
//! The liveness route, outermost first (each position says why). This list
//! is the one statement of the order: the README's architecture section
//! names the same steps in the same order, checked by a test.
//! 1. [`ExchangeLayer`] — creates the request's exchange record, renders
//!    every typed error into the documented response (the one renderer),
//!    catches panics, and emits the record exactly once: it is outermost so
//!    that every request, 401s and panics included, gets one.
//! 2. [`note_trace_id`] — the trace the request belongs to goes into its
//!    record (for the audit trail), right after the record exists.
//! 3. [`AuditLayer`](livegate_audit::AuditLayer) — reserves the request's
//!    audit record a place before anything else happens: when the audit
//!    sink is stuck, the request waits up to `audit.max_wait_ms`, then gets
//!    503 (50305) — before any vendor call, so nothing is ever served
//!    unaudited. Inside the exchange layer, so the refusal has its record
//!    (and error rendering) too.
//! 4. [`SingleHeadersLayer`] — a header that must appear once (the key,
//!    `Idempotency-Key`, `traceparent`) sent twice with different values is
//!    400 before anything reads it: which copy wins is never guessed.
//! 5. [`AuthLayer`] — the tenant key, before any of the body is read, so an
//!    unauthenticated client cannot make the gateway buffer a 10 MB upload.
//! 6. [`Policies::attach`] — the tenant's policy (limit, image policy,
//!    protection) resolved once into one [`TenantPolicy`] extension, which
//!    every later layer reads its part of.
//! 7. [`RateLimitLayer`] — the tenant's rate and monthly quota (429 with
//!    `Retry-After`), still before the body is read, so a limited tenant's
//!    upload is never buffered; sets the `RateLimit-*` headers every later
//!    answer carries.
//! 8. [`AdmissionLayer`] — caps liveness requests in flight and the body
//!    bytes they hold (each tenant to its share while others are active): a
//!    request that does not fit gets 503 with `Retry-After` before any of
//!    its body is read. After auth, so an unauthenticated flood cannot take
//!    the slots of real tenants.
//! 9. [`PayloadLayer`] — reads the body (bounded by the limit and the read
//!    timeout; a declared length over the limit is refused unread), checks
//!    and normalizes the image with the tenant's policy: every refusal
//!    happens before the vendor, who bills per call, is contacted.
//! 10. [`ProtectLayer`] — liveness-aware protection with the tenant's
//!     policy: `Idempotency-Key` (a stored answer is served here, before
//!     any vendor call), the perceptual hash and metadata removal (on the
//!     blocking pool), replay detection (`reject` refuses here, before the
//!     vendor); after the answer, the image is remembered, the score
//!     decision added and the answer stored. After the payload layer,
//!     because it works on the accepted, decoded image; the last layer
//!     before the vendor, so that every cheaper refusal came first.
//! 11. [`Forward`] around the vendor service — makes the vendor request (the
//!     prepared body and `traceparent`, no header of the client's) and turns
//!     the vendor's answer into the client's response. Layers around the
//!     vendor client itself (circuit breaker, upstream span) go between 11
//!     and the client, in [`router_with`]'s `vendor` argument.
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
use http::{HeaderMap, Request, Response, StatusCode};
use livegate_audit::Audit;
use livegate_auth::{AuthLayer, Authenticator, KeyStore};
use livegate_config::{FailMode, Mode};
use livegate_core::admission::{Admission, AdmissionLayer};
use livegate_core::exchange::{Exchange, ExchangeLayer, ExchangeSink};
use livegate_core::single_headers::SingleHeadersLayer;
use livegate_core::{Clock, ErrorKind, error_response, request_id};
use livegate_metrics::Metrics;
use livegate_payload::{ImagePolicy, PayloadLayer};
use livegate_protect::store::{IdempotencyStore, ReplayStore};
use livegate_protect::{ProtectLayer, ProtectionPolicy};
use livegate_ratelimit::{Limit, Limiter, RateLimitLayer};
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
use crate::policy::{Policies, TenantPolicy};
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
    // The steps in the order of the module docs (one numbered line each).
    let policies = Policies {
        images: gw.images,
        protection: gw.protection.policy,
        default_limit: gw.limits.default,
    };
    let liveness = ServiceBuilder::new()
        .layer(ExchangeLayer::new(gw.sink.clone(), gw.clock.clone())) // 1
        .map_request(note_trace_id) // 2
        .layer(gw.audit.layer()) // 3
        .layer(SingleHeadersLayer) // 4
        .layer(AuthLayer::new(gw.authenticator.clone())) // 5
        .map_request(move |req| policies.attach::<Body>(req)) // 6
        .layer(
            // 7
            RateLimitLayer::new(gw.limits.limiter.clone())
                .policy::<TenantPolicy>()
                .global(gw.limits.global),
        )
        .layer(AdmissionLayer::new(gw.admission.clone()).per_tenant::<TenantPolicy>()) // 8
        .layer(
            // 9
            PayloadLayer::new(gw.body.limit, gw.body.read_timeout)
                .blocking_above(gw.body.blocking_above)
                .policy::<TenantPolicy>(),
        )
        .layer(
            // 10
            ProtectLayer::new(
                gw.protection.replay.clone(),
                gw.protection.idempotency.clone(),
            )
            .policy::<TenantPolicy>()
            .fail_closed(gw.fail_mode == FailMode::Closed)
            .blocking_above(gw.body.blocking_above)
            .image_concurrency(gw.body.image_concurrency)
            .memory_budget(gw.admission.clone())
            .lease(gw.protection.lease),
        )
        .service(Forward::new(vendor, gw.vendor.endpoint.clone())); // 11

    let routes = Router::new()
        .route("/modules/liveness", post_service(liveness))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(gw.clone());
    around_every_route(routes, gw.scheme, gw.metrics.clone())
}

/// What every route of either listener gets: the request id, a span, JSON
/// 404/405 answers, the HTTP server duration and a panic catcher.
fn around_every_route(routes: Router, scheme: &'static str, metrics: Arc<Metrics>) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                // `http.server.request.duration`, by route template (the
                // router has matched it by now; none for a 404), outside
                // everything else the route does.
                .layer(axum::middleware::from_fn_with_state(metrics, http_duration))
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

/// Records one request's `http.server.request.duration`.
async fn http_duration(
    State(metrics): State<Arc<Metrics>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let res = next.run(req).await;
    metrics.http_request(
        &method,
        route.as_deref(),
        res.status().as_u16(),
        started.elapsed(),
    );
    res
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
pub fn ops_router(
    gw: &Gateway,
    admin: Option<livegate_admin::AdminApi>,
    metrics_token: Option<livegate_admin::TokenDigest>,
) -> Router {
    let mut metrics_route = get(metrics);
    if let Some(token) = metrics_token {
        // `[ops] metrics_token`: the tenant ids in the metrics are not for
        // whoever reaches the port.
        metrics_route = metrics_route.route_layer(axum::middleware::from_fn(
            move |req: Request<Body>, next: axum::middleware::Next| {
                let admitted = token.presented_in(req.headers());
                async move {
                    if admitted {
                        next.run(req).await
                    } else {
                        error_response(ErrorKind::MetricsTokenInvalid, request_id(req.headers()))
                    }
                }
            },
        ));
    }
    let mut routes = Router::new()
        .route("/metrics", metrics_route)
        .with_state(gw.clone());
    if let Some(api) = admin {
        routes = routes.merge(livegate_admin::router(api));
    }
    around_every_route(routes, "http", gw.metrics.clone())
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
    let state = parts_state(&gw).await;
    let mut res = Response::new(Body::from(gw.metrics.encode(state)));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(livegate_metrics::CONTENT_TYPE),
    );
    res
}

/// Keeps the parts' state the OTLP metrics export observes current: read
/// every `interval` (at most every 5 s, at least every 100 ms), as a
/// scrape reads it.
pub fn observe_parts(gw: &Gateway, interval: Duration) {
    let gw = gw.clone();
    let every = interval.clamp(Duration::from_millis(100), Duration::from_secs(5));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let state = parts_state(&gw).await;
            gw.metrics.set_state(state);
        }
    });
}

/// The state of the gateway's parts, read now.
async fn parts_state(gw: &Gateway) -> livegate_metrics::State {
    let (in_flight, body_bytes) = gw.admission.in_flight();
    let limiter = gw.limits.limiter.health();
    livegate_metrics::State {
        in_flight_requests: in_flight as u64,
        in_flight_body_bytes: body_bytes as u64,
        admission_refusals: gw.admission.refused(),
        circuit: gw.vendor.breaker.state().as_str(),
        limiter_backend: limiter.backend,
        limiter_mode: limiter.mode,
        limiter_redis_errors: limiter.errors,
        key_store_ok: gw.store.health().await.ok,
        audit: Some(audit_state(&gw.audit)),
    }
}

/// Step 2 of the liveness route: the trace the request belongs to (its
/// span's, or the client's `traceparent`) goes into its exchange record,
/// for the audit trail.
fn note_trace_id(req: Request<Body>) -> Request<Body> {
    if let Some(x) = Exchange::of(&req) {
        if let Some(t) = trace_id_of(&tracing::Span::current(), req.headers()) {
            x.set_trace_id(t);
        }
    }
    req
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

#[cfg(test)]
mod tests {
    /// The liveness route's steps as this module's docs number them: the
    /// item number and the first linked name of each `//! N. [`name`]` line.
    fn documented_steps() -> Vec<(usize, String)> {
        include_str!("gateway.rs")
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("//! ")?;
                let (n, rest) = rest.split_once(". [`")?;
                let n = n.parse().ok()?;
                let (name, _) = rest.split_once('`')?;
                Some((n, name.to_owned()))
            })
            .collect()
    }

    /// The order of the layers is written once, in the module docs; the
    /// README's architecture table must name the same steps in the same
    /// order (rows starting `| N. `name``), as the error table is checked.
    #[test]
    fn readme_names_the_layers_in_the_stacks_order() {
        let steps = documented_steps();
        let numbers: Vec<usize> = steps.iter().map(|s| s.0).collect();
        assert_eq!(numbers, (1..=steps.len()).collect::<Vec<_>>(), "{steps:?}");
        assert!(steps.len() >= 10, "{steps:?}");
        let readme = include_str!("../../../README.md");
        for (n, name) in &steps {
            let line = format!("| {n}. `{name}`");
            assert!(
                readme.lines().any(|l| l.trim_start().starts_with(&line)),
                "README.md lacks the request-path step `{line} …`"
            );
        }
    }
}
