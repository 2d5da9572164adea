//! The whole request stack, built in one place.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post_service};
use http::{HeaderMap, Response, StatusCode};
use livegate_auth::authn::Authenticator;
use livegate_core::{ErrorKind, error_response, request_id};
use livegate_upstream::VendorClient;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::body_limit::BodyLimitLayer;
use crate::normalize::{NormalizeLayer, Policies};
use crate::proxy::Proxy;
use crate::request_id::{RandomRequestId, drop_untrusted_id};

/// Everything the request path needs, built once by [`crate::runtime`].
#[derive(Clone)]
pub struct Gateway {
    pub authenticator: Authenticator,
    pub policies: Arc<Policies>,
    pub vendor: VendorClient,
    pub body_limit: usize,
    pub body_read_timeout: Duration,
    /// `embedded` (built-in simulator) or `vendor`.
    pub mode: &'static str,
    pub health: Health,
}

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

/// The public router: the liveness route with its stack, the probes, and
/// JSON answers for unknown routes and methods.
pub fn router(gw: &Gateway) -> Router {
    let liveness = ServiceBuilder::new()
        // Auth first: an unauthenticated client never gets its body read,
        // so it cannot make the gateway buffer a 10 MB upload.
        .layer(crate::auth::layer(gw.authenticator.clone()))
        // The limit wraps the body before anything reads it; a declared
        // Content-Length over the limit is refused without reading.
        .layer(BodyLimitLayer::new(gw.body_limit))
        // Reads, checks and rewrites the image; every refusal here happens
        // before the vendor (who bills per call) is contacted.
        .layer(NormalizeLayer::new(
            gw.policies.clone(),
            gw.body_read_timeout,
        ))
        .service(Proxy::new(gw.vendor.clone()));

    Router::new()
        .route("/modules/liveness", post_service(liveness))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gw.clone())
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
                // anywhere.
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                // A bug must still answer in the documented shape, never
                // with a stack trace.
                .layer(CatchPanicLayer::custom(|_| {
                    tracing::error!("request handler panicked");
                    error_response(ErrorKind::Internal, "")
                })),
        )
}

/// The span every request's logs carry; `tenant` and `key_id` are
/// filled in by the auth layer.
fn request_span<B>(req: &http::Request<B>) -> tracing::Span {
    let path = match req.uri().path() {
        p @ ("/modules/liveness" | "/livez" | "/readyz") => p,
        _ => "other",
    };
    tracing::info_span!(
        "request",
        method = %req.method(),
        path,
        request_id = request_id(req.headers()),
        tenant = tracing::field::Empty,
        key_id = tracing::field::Empty,
    )
}

async fn livez() -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

async fn readyz(State(gw): State<Gateway>) -> Response<Body> {
    let (status, state) = if gw.health.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ready")
    };
    // The vendor is deliberately not checked: a vendor outage must not take
    // every replica out of service.
    let body = serde_json::json!({
        "status": state,
        "mode": gw.mode,
        "keyStore": "memory",
    });
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

async fn not_found(headers: HeaderMap) -> Response<Body> {
    error_response(ErrorKind::NotFound, request_id(&headers))
}

async fn method_not_allowed(headers: HeaderMap) -> Response<Body> {
    error_response(ErrorKind::MethodNotAllowed, request_id(&headers))
}
