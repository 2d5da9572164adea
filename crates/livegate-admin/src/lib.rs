//! The admin API: tenants and keys at run time, on the operations listener
//! only (never the public one).
//!
//! Routes (JSON in camelCase, errors in the public API's shape), by module:
//! - `tenants`: `POST /admin/v1/tenants`
//!   `{"id","name","ratePerSecond","burst","monthlyQuota","images":{...},"protection":{...}}` → 201;
//!   `GET /admin/v1/tenants`; `GET|PATCH /admin/v1/tenants/{id}`;
//!   `POST /admin/v1/tenants/{id}/disable` and `/enable`
//! - `keys`: `POST /admin/v1/tenants/{id}/keys` `{"expiresAt"?, "requestId"?}`
//!   → 201 `{"keyId","key",...}` (a repeated `requestId` → 409 40905 naming
//!   the key it made, writing nothing): the plaintext key is in this answer
//!   only; the store gets its HMAC. `GET /admin/v1/tenants/{id}/keys` (never
//!   a secret or a hash); `POST /admin/v1/keys/{keyId}/revoke`;
//!   `POST /admin/v1/keys/{keyId}/rotate` `{"graceSeconds"}` → 201 with the
//!   new `keyId` and `key`; the old key keeps working for the grace period
//! - `usage`: `GET /admin/v1/tenants/{id}/usage`
//! - `audit`: `GET /admin/v1/audit/{transactionId}`
//! - `openapi`: `GET /admin/v1/openapi.json`
//!
//! One route layer (`access`) checks every request's bearer token and the
//! scope its route needs ([`ROUTES`]) before any handler runs or any body is
//! read, and renders every refusal in the error shape with the request id.
//! Bodies are read by `body::JsonBody`, which refuses one over
//! [`MAX_BODY`] with 413 41301. The JSON types are in `wire`. Every
//! action that changes something emits one admin audit event (`tracing`
//! target `livegate::admin`: action, tenant, key id, the token's name —
//! never a key or a token).
//!
//! It owns validation of what an operator sends (tenant ids, rates, bursts,
//! quotas, image policies, expiry, grace) and the JSON; the store behind
//! ([`KeyAdmin`]) owns atomicity, and the authenticator reads the same
//! store, so an issued key works at once and a revoked key stops working as
//! soon as the store says so.

mod access;
mod audit;
mod body;
mod keys;
mod openapi;
mod tenants;
mod usage;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::Method;
use livegate_audit::Audit;
use livegate_auth::key::KeyId;
use livegate_auth::{AdminError, KeyAdmin, Pepper};
use livegate_core::{Clock, ErrorKind, Secret, Timestamp, error_response};
use livegate_payload::ImagePolicy;
use livegate_protect::ProtectionPolicy;
use livegate_ratelimit::Limiter;

pub use access::{AdminToken, Scope, TokenDigest, Tokens};
pub use body::MAX_BODY;
pub use openapi::OPENAPI;

/// Longest grace period of a rotation: a week.
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The deployment's `(rate, burst)` for tenants that set none.
pub type DefaultRate = Option<(f64, u32)>;

/// What the admin API needs.
pub struct AdminApi {
    pub store: Arc<dyn KeyAdmin>,
    /// Hashes issued keys, as the authenticator checks them.
    pub pepper: Pepper,
    pub clock: Arc<dyn Clock>,
    /// The deployment's image policy, which tenants' overrides apply to.
    pub images: ImagePolicy,
    /// The deployment's `[protection]`, which tenants' overrides apply to.
    pub protection: ProtectionPolicy,
    /// Tenants' usage: the gateway's limiter and the default rate.
    pub limiter: Option<(Arc<dyn Limiter>, DefaultRate)>,
    /// The audit trail, for lookups by transactionId.
    pub audit: Option<Audit>,
    /// Who may call: the tokens (as digests) and their scopes.
    tokens: Tokens,
}

impl AdminApi {
    /// The API with one token of scope `admin` (`[admin] token`); more
    /// with [`AdminApi::with_token`].
    pub fn new(
        store: Arc<dyn KeyAdmin>,
        pepper: Pepper,
        clock: Arc<dyn Clock>,
        images: ImagePolicy,
        token: &Secret,
    ) -> Self {
        Self::without_tokens(store, pepper, clock, images).with_token(AdminToken::new(
            "admin",
            token,
            [Scope::Admin],
            None,
        ))
    }

    /// The API with no token yet: every call is 401 until one is added.
    pub fn without_tokens(
        store: Arc<dyn KeyAdmin>,
        pepper: Pepper,
        clock: Arc<dyn Clock>,
        images: ImagePolicy,
    ) -> Self {
        Self {
            store,
            pepper,
            clock,
            images,
            protection: ProtectionPolicy::default(),
            limiter: None,
            audit: None,
            tokens: Tokens::default(),
        }
    }

    /// Another token that may call the API (`[[admin.tokens]]`).
    pub fn with_token(mut self, token: AdminToken) -> Self {
        self.tokens.push(token);
        self
    }

    /// Tenants' protection overrides are checked against this policy.
    pub fn with_protection(mut self, protection: ProtectionPolicy) -> Self {
        self.protection = protection;
        self
    }

    /// Usage comes from the gateway's limiter, for tenants it limits.
    pub fn with_limiter(
        mut self,
        limiter: Arc<dyn Limiter>,
        default_rate: Option<(f64, u32)>,
    ) -> Self {
        self.limiter = Some((limiter, default_rate));
        self
    }

    /// Audit records are looked up in this trail (a lookup needs its Redis sink).
    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = Some(audit);
        self
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.clock.now())
    }
}

/// An admin route: method, path (as the router and the document spell it)
/// and the scope a token needs for it.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub scope: Scope,
}

impl Route {
    const fn new(method: &'static str, path: &'static str, scope: Scope) -> Self {
        Self {
            method,
            path,
            scope,
        }
    }

    /// Whether a request for `method` and the matched `path` is this route
    /// (`HEAD` is routed to `GET` handlers, so it is a `GET` here too).
    fn is(&self, method: &Method, path: &str) -> bool {
        let method = if method == Method::HEAD {
            "GET"
        } else {
            method.as_str()
        };
        self.method == method && self.path == path
    }
}

/// Every admin route with its scope: the router has exactly these, the
/// document lists exactly these (with `x-livegate-scope`), and the access
/// layer reads the scope from here.
pub const ROUTES: &[Route] = &[
    Route::new("POST", "/admin/v1/tenants", Scope::Admin),
    Route::new("GET", "/admin/v1/tenants", Scope::Read),
    Route::new("GET", "/admin/v1/tenants/{id}", Scope::Read),
    Route::new("PATCH", "/admin/v1/tenants/{id}", Scope::Admin),
    Route::new("POST", "/admin/v1/tenants/{id}/disable", Scope::Admin),
    Route::new("POST", "/admin/v1/tenants/{id}/enable", Scope::Admin),
    Route::new("POST", "/admin/v1/tenants/{id}/keys", Scope::Keys),
    Route::new("GET", "/admin/v1/tenants/{id}/keys", Scope::Read),
    Route::new("POST", "/admin/v1/keys/{keyId}/revoke", Scope::Keys),
    Route::new("POST", "/admin/v1/keys/{keyId}/rotate", Scope::Keys),
    Route::new("GET", "/admin/v1/tenants/{id}/usage", Scope::Read),
    Route::new("GET", "/admin/v1/openapi.json", Scope::Read),
    Route::new("GET", "/admin/v1/audit/{transactionId}", Scope::Read),
];

/// The admin routes, on a router to merge into the operations listener's.
pub fn router(api: AdminApi) -> Router {
    let api = Arc::new(api);
    Router::new()
        .route("/admin/v1/openapi.json", get(openapi::document))
        .route(
            "/admin/v1/tenants",
            post(tenants::create).get(tenants::list),
        )
        .route(
            "/admin/v1/tenants/{id}",
            get(tenants::get).patch(tenants::update),
        )
        .route("/admin/v1/tenants/{id}/disable", post(tenants::disable))
        .route("/admin/v1/tenants/{id}/enable", post(tenants::enable))
        .route(
            "/admin/v1/tenants/{id}/keys",
            post(keys::issue).get(keys::list),
        )
        .route("/admin/v1/tenants/{id}/usage", get(usage::usage))
        .route("/admin/v1/keys/{keyId}/revoke", post(keys::revoke))
        .route("/admin/v1/keys/{keyId}/rotate", post(keys::rotate))
        .route("/admin/v1/audit/{transactionId}", get(audit::record))
        // Only on matched routes: an unknown path stays 404, a wrong method 405.
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            access::gate,
        ))
        .with_state(api)
}

/// An admin request refused. A handler returns it; the access layer renders
/// it in the public API's error shape with the request id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal(pub ErrorKind);

impl Refusal {
    fn render(self, request_id: &str) -> Response {
        error_response(self.0, request_id)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut res = self.0.status().into_response();
        res.extensions_mut().insert(self);
        res
    }
}

impl From<AdminError> for Refusal {
    fn from(e: AdminError) -> Self {
        Refusal(match e {
            AdminError::TenantNotFound => ErrorKind::TenantNotFound,
            AdminError::TenantExists => ErrorKind::TenantExists,
            AdminError::KeyNotFound => ErrorKind::KeyNotFound,
            AdminError::KeyRevoked => ErrorKind::KeyAlreadyRevoked,
            AdminError::AlreadyIssued(_) => ErrorKind::KeyAlreadyIssued,
            AdminError::Store(err) => {
                tracing::error!(error = %err, "key store failed during an admin call");
                ErrorKind::StoreUnavailable
            }
        })
    }
}

/// One admin audit event: what changed, and which token did it.
fn audit_event(
    action: &'static str,
    caller: &access::Caller,
    tenant: &str,
    key_id: Option<&KeyId>,
) {
    tracing::info!(
        target: "livegate::admin",
        action,
        tenant,
        key_id = key_id.map(KeyId::as_str),
        token = caller.0.name(),
        "admin action"
    );
}

/// The tenant of a key, found through the tenant list (admin calls are
/// rare; the request path never does this); `None` when no tenant has it.
pub(crate) async fn find_key_tenant(
    store: &dyn KeyAdmin,
    kid: &str,
) -> Result<Option<String>, Refusal> {
    if kid.parse::<KeyId>().is_err() {
        return Ok(None);
    }
    for t in store.tenants().await? {
        match store.keys(&t.id).await {
            Ok(keys) if keys.iter().any(|k| k.kid.as_str() == kid) => return Ok(Some(t.id)),
            Ok(_) | Err(AdminError::TenantNotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use http_body_util::BodyExt;
    use livegate_auth::MemoryStore;
    use livegate_core::SystemClock;
    use tower::ServiceExt;

    use super::*;

    const TOKEN: &str = "test-admin-token-0123456789";

    fn api() -> Router {
        router(AdminApi::new(
            Arc::new(MemoryStore::new()),
            Pepper::new("admin-test-pepper-0123").unwrap(),
            Arc::new(SystemClock),
            ImagePolicy::default(),
            &Secret::new(TOKEN),
        ))
    }

    /// The document and the router name the same admin routes, and the
    /// document states each route's scope as the access layer applies it.
    #[test]
    fn the_document_lists_exactly_the_admin_routes_and_their_scopes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                if path.starts_with("/admin/") && method != "parameters" {
                    let scope = op["x-livegate-scope"].as_str().unwrap_or("none");
                    documented.insert((method.to_uppercase(), path.clone(), scope.to_owned()));
                    // A 403 is documented wherever a narrower token can be refused.
                    assert!(
                        op["responses"]["403"].is_object(),
                        "{method} {path} documents no 403"
                    );
                }
            }
        }
        let routed: BTreeSet<(String, String, String)> = ROUTES
            .iter()
            .map(|r| {
                (
                    r.method.to_owned(),
                    r.path.to_owned(),
                    r.scope.as_str().to_owned(),
                )
            })
            .collect();
        assert_eq!(documented, routed);
        for public in ["/modules/liveness", "/livez", "/readyz"] {
            assert!(doc["paths"][public].is_object(), "{public}");
        }
    }

    async fn call(app: &Router, method: &str, path: &str, body: &str) -> serde_json::Value {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert!(
            res.status().is_success(),
            "{method} {path}: {}",
            res.status()
        );
        let body = res.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn the_key_view_shows_the_last_use() {
        use livegate_auth::KeyStore;

        let store = Arc::new(MemoryStore::new());
        let app = router(AdminApi::new(
            store.clone(),
            Pepper::new("admin-test-pepper-0123").unwrap(),
            Arc::new(SystemClock),
            ImagePolicy::default(),
            &Secret::new(TOKEN),
        ));
        call(&app, "POST", "/admin/v1/tenants", r#"{"id":"acme"}"#).await;
        let issued = call(&app, "POST", "/admin/v1/tenants/acme/keys", "{}").await;
        assert!(issued["lastUsedAt"].is_null(), "{issued}");
        let kid = issued["keyId"].as_str().unwrap().to_owned();
        let listed = call(&app, "GET", "/admin/v1/tenants/acme/keys", "").await;
        assert!(
            listed[0].as_object().unwrap()["lastUsedAt"].is_null(),
            "present, and null when never used: {listed}"
        );

        let at = Timestamp(std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        store.touch(&kid, at).await.unwrap();
        let listed = call(&app, "GET", "/admin/v1/tenants/acme/keys", "").await;
        assert_eq!(listed[0]["lastUsedAt"], "2027-01-15T08:00:00Z", "{listed}");
        let revoked = call(&app, "POST", &format!("/admin/v1/keys/{kid}/revoke"), "").await;
        assert_eq!(revoked["lastUsedAt"], "2027-01-15T08:00:00Z", "{revoked}");
    }

    /// The document's key schema has every field the key view has.
    #[test]
    fn the_key_schema_lists_the_last_use() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let last = &doc["components"]["schemas"]["Key"]["properties"]["lastUsedAt"];
        assert_eq!(last["type"], serde_json::json!(["string", "null"]));
        assert_eq!(last["format"], "date-time");
    }

    /// The access layer runs on matched routes only: without a token an
    /// unknown path is still 404 and a wrong method 405, as routing says.
    #[tokio::test]
    async fn routing_answers_before_the_token_is_checked() {
        let app = api();
        for (method, path, status) in [
            ("DELETE", "/admin/v1/tenants", 405),
            ("GET", "/admin/v1/nothing", 404),
            ("GET", "/admin/v1/tenants", 401),
            ("HEAD", "/admin/v1/tenants", 401),
            ("HEAD", "/admin/v1/tenants/nobody", 401),
        ] {
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status().as_u16(), status, "{method} {path}");
        }
    }

    /// The router has no method ROUTES does not list: every other method of
    /// every admin path is routing's 405, even without a token (so the
    /// access layer, which lets those through to routing, guards every
    /// handler).
    #[tokio::test]
    async fn the_router_has_exactly_the_listed_methods() {
        let app = api();
        for route in ROUTES {
            for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] {
                let listed = ROUTES.iter().any(|r| {
                    r.path == route.path
                        && (r.method == method || (method == "HEAD" && r.method == "GET"))
                });
                if listed {
                    continue;
                }
                let req = http::Request::builder()
                    .method(method)
                    .uri(route.path)
                    .body(axum::body::Body::empty())
                    .unwrap();
                let res = app.clone().oneshot(req).await.unwrap();
                assert_eq!(res.status().as_u16(), 405, "{method} {}", route.path);
            }
        }
    }

    /// Every listed route exists in the router (no 404 or 405 from routing).
    #[tokio::test]
    async fn every_listed_route_is_routed() {
        let app = api();
        for route in ROUTES {
            let path = route
                .path
                .replace("{id}", "nobody")
                .replace("{keyId}", "abcdefabcdef")
                .replace("{transactionId}", "abcdefabcdefa");
            let req = http::Request::builder()
                .method(route.method)
                .uri(&path)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(axum::body::Body::from("{}"))
                .unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            assert_ne!(
                res.status(),
                http::StatusCode::METHOD_NOT_ALLOWED,
                "{} {path}",
                route.method
            );
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&body);
            // A missing route answers axum's empty 404; ours name a tenant or key.
            assert!(!text.is_empty(), "{} {path} is not routed", route.method);
        }
    }
}
