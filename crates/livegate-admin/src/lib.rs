//! The admin API: tenants and keys at run time, on the operations listener
//! only (never the public one).
//!
//! Routes (JSON in camelCase, errors in the public API's shape):
//! - `POST /admin/v1/tenants` `{"id","name","ratePerSecond","burst","monthlyQuota","images":{...},"protection":{...}}` → 201
//! - `GET /admin/v1/tenants`; `GET|PATCH /admin/v1/tenants/{id}`
//! - `POST /admin/v1/tenants/{id}/disable` and `/enable`
//! - `POST /admin/v1/tenants/{id}/keys` `{"expiresAt"?, "requestId"?}` → 201 `{"keyId","key",...}`
//!   (a repeated `requestId` → 409 40905 naming the key it made, writing nothing):
//!   the plaintext key is in this answer only; the store gets its HMAC
//! - `GET /admin/v1/tenants/{id}/keys` (never a secret or a hash)
//! - `POST /admin/v1/keys/{keyId}/revoke`
//! - `POST /admin/v1/keys/{keyId}/rotate` `{"graceSeconds"}` → 201 with the
//!   new `keyId` and `key`; the old key keeps working for the grace period
//!
//! Every route needs `Authorization: Bearer <admin token>`, compared in
//! constant time (as SHA-256 digests, so not even the length leaks). Every
//! action that changes something emits one admin audit event (`tracing`
//! target `livegate::admin`: action, tenant, key id — never a key or the
//! token).
//!
//! It owns validation of what an operator sends (tenant ids, rates, bursts,
//! quotas, image policies, expiry, grace) and the JSON views; the store
//! behind ([`KeyAdmin`]) owns atomicity, and the authenticator reads the
//! same store, so an issued key works at once and a revoked key stops
//! working as soon as the store says so.

use std::sync::Arc;
use std::time::Duration;

use livegate_protect::{ProtectionOverrides, ProtectionPolicy, ReplayMode, ReplayScope};

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use livegate_audit::{Audit, LookupError};
use livegate_auth::key::KeyId;
use livegate_auth::{AdminError, KeyAdmin, KeyRecord, Pepper, Tenant, TenantUpdate, generate};
use livegate_core::{Clock, ErrorKind, Secret, Timestamp, error_response, request_id};
use livegate_payload::{FormatSet, ImageOverrides, ImagePolicy};
use livegate_ratelimit::{Limiter, Usage, limit_of};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Longest grace period of a rotation: a week.
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_RATE: f64 = 100_000.0;
const MAX_BURST: u32 = 100_000;
const MAX_QUOTA: u64 = 1_000_000_000_000;

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
    token_digest: [u8; 32],
}

impl AdminApi {
    pub fn new(
        store: Arc<dyn KeyAdmin>,
        pepper: Pepper,
        clock: Arc<dyn Clock>,
        images: ImagePolicy,
        token: &Secret,
    ) -> Self {
        Self {
            store,
            pepper,
            clock,
            images,
            protection: ProtectionPolicy::default(),
            limiter: None,
            audit: None,
            token_digest: Sha256::digest(token.expose().as_bytes()).into(),
        }
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

    fn authorize(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .unwrap_or("");
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if presented.is_empty() || !bool::from(digest.ct_eq(&self.token_digest)) {
            return Err(Refusal(ErrorKind::AdminTokenInvalid));
        }
        Ok(())
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.clock.now())
    }
}

/// The OpenAPI 3.1 document of the public and admin APIs, served at
/// `GET /admin/v1/openapi.json`; a test holds it to the routes that exist.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every admin route, as the router has them and the document lists them.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/admin/v1/tenants"),
    ("GET", "/admin/v1/tenants"),
    ("GET", "/admin/v1/tenants/{id}"),
    ("PATCH", "/admin/v1/tenants/{id}"),
    ("POST", "/admin/v1/tenants/{id}/disable"),
    ("POST", "/admin/v1/tenants/{id}/enable"),
    ("POST", "/admin/v1/tenants/{id}/keys"),
    ("GET", "/admin/v1/tenants/{id}/keys"),
    ("POST", "/admin/v1/keys/{keyId}/revoke"),
    ("POST", "/admin/v1/keys/{keyId}/rotate"),
    ("GET", "/admin/v1/tenants/{id}/usage"),
    ("GET", "/admin/v1/openapi.json"),
    ("GET", "/admin/v1/audit/{transactionId}"),
];

/// The admin routes, on a router to merge into the operations listener's.
pub fn router(api: AdminApi) -> Router {
    Router::new()
        .route("/admin/v1/openapi.json", get(openapi))
        .route("/admin/v1/tenants", post(create_tenant).get(list_tenants))
        .route(
            "/admin/v1/tenants/{id}",
            get(get_tenant).patch(update_tenant),
        )
        .route("/admin/v1/tenants/{id}/disable", post(disable_tenant))
        .route("/admin/v1/tenants/{id}/enable", post(enable_tenant))
        .route(
            "/admin/v1/tenants/{id}/keys",
            post(issue_key).get(list_keys),
        )
        .route("/admin/v1/tenants/{id}/usage", get(usage))
        .route("/admin/v1/keys/{key_id}/revoke", post(revoke_key))
        .route("/admin/v1/keys/{key_id}/rotate", post(rotate_key))
        .route("/admin/v1/audit/{transaction_id}", get(audit_record))
        .with_state(Arc::new(api))
}

/// An admin request refused; rendered in the public API's error shape.
#[derive(Debug)]
struct Refusal(ErrorKind);

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

/// A handler's answer: the JSON view, or the refusal, with the request id.
fn answer<T: Serialize>(
    headers: &HeaderMap,
    status: StatusCode,
    result: Result<T, Refusal>,
) -> Response {
    match result {
        Ok(body) => json_response(status, serde_json::to_vec(&body).unwrap_or_default()),
        Err(Refusal(kind)) => error_response(kind, request_id(headers)),
    }
}

/// `body`, already JSON, as an `application/json` response.
fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut res = (status, body.into()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Refusal> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|_| Refusal(ErrorKind::InvalidAdminRequest))
}

fn audit(action: &'static str, tenant: &str, key_id: Option<&KeyId>) {
    tracing::info!(
        target: "livegate::admin",
        action,
        tenant,
        key_id = key_id.map(KeyId::as_str),
        "admin action"
    );
}

/// A tenant's image overrides, in camelCase.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct ImagesView {
    #[serde(skip_serializing_if = "Option::is_none")]
    formats: Option<FormatSet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_height: Option<u32>,
}

impl From<ImagesView> for ImageOverrides {
    fn from(v: ImagesView) -> Self {
        ImageOverrides {
            formats: v.formats,
            min_width: v.min_width,
            min_height: v.min_height,
            max_width: v.max_width,
            max_height: v.max_height,
        }
    }
}

impl From<ImageOverrides> for ImagesView {
    fn from(o: ImageOverrides) -> Self {
        ImagesView {
            formats: o.formats,
            min_width: o.min_width,
            min_height: o.min_height,
            max_width: o.max_width,
            max_height: o.max_height,
        }
    }
}

/// A tenant's protection overrides, in camelCase.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct ProtectionView {
    #[serde(skip_serializing_if = "Option::is_none")]
    replay: Option<ReplayMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_window_hours: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_scope: Option<ReplayScope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_max_distance: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strip_metadata: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    score_threshold: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    review_band: Option<u8>,
}

impl From<ProtectionView> for ProtectionOverrides {
    fn from(v: ProtectionView) -> Self {
        ProtectionOverrides {
            replay: v.replay,
            replay_window_hours: v.replay_window_hours,
            replay_scope: v.replay_scope,
            replay_max_distance: v.replay_max_distance,
            strip_metadata: v.strip_metadata,
            score_threshold: v.score_threshold,
            review_band: v.review_band,
        }
    }
}

impl From<ProtectionOverrides> for ProtectionView {
    fn from(o: ProtectionOverrides) -> Self {
        ProtectionView {
            replay: o.replay,
            replay_window_hours: o.replay_window_hours,
            replay_scope: o.replay_scope,
            replay_max_distance: o.replay_max_distance,
            strip_metadata: o.strip_metadata,
            score_threshold: o.score_threshold,
            review_band: o.review_band,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TenantView {
    id: String,
    name: Option<String>,
    disabled: bool,
    rate_per_second: Option<f64>,
    burst: Option<u32>,
    monthly_quota: Option<u64>,
    images: ImagesView,
    protection: ProtectionView,
    created_at: Option<Timestamp>,
    updated_at: Option<Timestamp>,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        TenantView {
            id: t.id,
            name: t.name,
            disabled: t.disabled,
            rate_per_second: t.settings.rate_per_second,
            burst: t.settings.burst,
            monthly_quota: t.settings.monthly_quota,
            images: t.settings.images.into(),
            protection: t.settings.protection.into(),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyView {
    key_id: String,
    tenant_id: String,
    /// `active`, `expired` or `revoked`.
    state: &'static str,
    created_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    rotated_from: Option<String>,
    /// When the key last authenticated a request, to within about a minute;
    /// `null` when never (or not since this field existed).
    last_used_at: Option<Timestamp>,
}

impl KeyView {
    fn of(k: &KeyRecord, now: Timestamp) -> Self {
        let state = if k.revoked {
            "revoked"
        } else if k.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        KeyView {
            key_id: k.kid.to_string(),
            tenant_id: k.tenant_id.clone(),
            state,
            created_at: k.created_at,
            expires_at: k.expires_at,
            rotated_from: k.rotated_from.as_ref().map(ToString::to_string),
            last_used_at: k.last_used_at,
        }
    }
}

/// A newly issued key: the only answer that ever holds a plaintext key.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IssuedKey {
    #[serde(flatten)]
    view: KeyView,
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_key_expires_at: Option<Timestamp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewTenant {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    rate_per_second: Option<f64>,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default)]
    monthly_quota: Option<u64>,
    #[serde(default)]
    images: Option<ImagesView>,
    #[serde(default)]
    protection: Option<ProtectionView>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct PatchTenant {
    name: Option<String>,
    rate_per_second: Option<f64>,
    burst: Option<u32>,
    monthly_quota: Option<u64>,
    images: Option<ImagesView>,
    protection: Option<ProtectionView>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct NewKey {
    expires_at: Option<Timestamp>,
    /// The client's id of this issuance: a retry with the same one never
    /// makes a second key (409 40905 naming the first).
    request_id: Option<String>,
}

/// Longest accepted `requestId` of a key issuance.
const MAX_REQUEST_ID_LEN: usize = 255;

fn valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.bytes().all(|c| (0x21..=0x7e).contains(&c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Rotate {
    grace_seconds: u64,
}

fn valid_tenant_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks settings an operator sent; the update to apply.
fn checked(api: &AdminApi, p: PatchTenant) -> Result<TenantUpdate, Refusal> {
    let bad = || Refusal(ErrorKind::InvalidSetting);
    if let Some(r) = p.rate_per_second {
        if !(r.is_finite() && r > 0.0 && r <= MAX_RATE) {
            return Err(bad());
        }
    }
    if p.burst.is_some_and(|b| b == 0 || b > MAX_BURST) {
        return Err(bad());
    }
    if p.monthly_quota.is_some_and(|q| q == 0 || q > MAX_QUOTA) {
        return Err(bad());
    }
    if p.name.as_ref().is_some_and(|n| n.len() > 200) {
        return Err(bad());
    }
    let images = p.images.map(ImageOverrides::from);
    if let Some(o) = &images {
        if !api.images.with(o).problems().is_empty() {
            return Err(bad());
        }
    }
    let protection = p.protection.map(ProtectionOverrides::from);
    if let Some(o) = &protection {
        if !api.protection.with(o).problems().is_empty() {
            return Err(bad());
        }
    }
    Ok(TenantUpdate {
        name: p.name,
        rate_per_second: p.rate_per_second,
        burst: p.burst,
        monthly_quota: p.monthly_quota,
        images,
        protection,
    })
}

type Api = State<Arc<AdminApi>>;

async fn openapi(State(api): Api, headers: HeaderMap) -> Response {
    match api.authorize(&headers) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response(),
        Err(Refusal(kind)) => error_response(kind, request_id(&headers)),
    }
}

async fn create_tenant(State(api): Api, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        api.authorize(&headers)?;
        let new: NewTenant = parse(&body)?;
        if !valid_tenant_id(&new.id) {
            return Err(Refusal(ErrorKind::InvalidSetting));
        }
        let update = checked(
            &api,
            PatchTenant {
                name: new.name,
                rate_per_second: new.rate_per_second,
                burst: new.burst,
                monthly_quota: new.monthly_quota,
                images: new.images,
                protection: new.protection,
            },
        )?;
        let now = api.now();
        let mut tenant = Tenant::new(new.id);
        update.apply(&mut tenant, now);
        tenant.created_at = Some(now);
        let tenant = api.store.create_tenant(tenant).await?;
        audit("tenant.create", &tenant.id, None);
        Ok(TenantView::from(tenant))
    }
    .await;
    answer(&headers, StatusCode::CREATED, result)
}

async fn list_tenants(State(api): Api, headers: HeaderMap) -> Response {
    let result = async {
        api.authorize(&headers)?;
        let all = api.store.tenants().await?;
        Ok(all.into_iter().map(TenantView::from).collect::<Vec<_>>())
    }
    .await;
    answer(&headers, StatusCode::OK, result)
}

async fn get_tenant(State(api): Api, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        api.authorize(&headers)?;
        Ok(TenantView::from(api.store.tenant(&id).await?))
    }
    .await;
    answer(&headers, StatusCode::OK, result)
}

async fn update_tenant(
    State(api): Api,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        api.authorize(&headers)?;
        let update = checked(&api, parse(&body)?)?;
        let tenant = api.store.update_tenant(&id, update, api.now()).await?;
        audit("tenant.update", &tenant.id, None);
        Ok(TenantView::from(tenant))
    }
    .await;
    answer(&headers, StatusCode::OK, result)
}

async fn set_disabled(api: &AdminApi, id: &str, headers: &HeaderMap, disabled: bool) -> Response {
    let result = async {
        api.authorize(headers)?;
        let tenant = api
            .store
            .set_tenant_disabled(id, disabled, api.now())
            .await?;
        audit(
            if disabled {
                "tenant.disable"
            } else {
                "tenant.enable"
            },
            &tenant.id,
            None,
        );
        Ok(TenantView::from(tenant))
    }
    .await;
    answer(headers, StatusCode::OK, result)
}

async fn disable_tenant(State(api): Api, Path(id): Path<String>, headers: HeaderMap) -> Response {
    set_disabled(&api, &id, &headers, true).await
}

async fn enable_tenant(State(api): Api, Path(id): Path<String>, headers: HeaderMap) -> Response {
    set_disabled(&api, &id, &headers, false).await
}

/// A fresh key for `tenant`: its record (hash only) and its plaintext.
fn fresh_key(api: &AdminApi, tenant: &str, expires_at: Option<Timestamp>) -> (KeyRecord, Secret) {
    let new = generate();
    let mut record = KeyRecord::new(new.kid.clone(), tenant, new.hash(&api.pepper));
    record.expires_at = expires_at;
    record.created_at = Some(api.now());
    (record, new.plaintext)
}

async fn issue_key(
    State(api): Api,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        api.authorize(&headers)?;
        let req: NewKey = parse(&body)?;
        if req.expires_at.is_some_and(|e| e <= api.now()) {
            return Err(Refusal(ErrorKind::InvalidSetting));
        }
        if req
            .request_id
            .as_deref()
            .is_some_and(|r| !valid_request_id(r))
        {
            return Err(Refusal(ErrorKind::InvalidAdminRequest));
        }
        let (record, plaintext) = fresh_key(&api, &id, req.expires_at);
        let added = match &req.request_id {
            Some(request_id) => api.store.add_key_once(record, request_id).await,
            None => api.store.add_key(record).await,
        };
        let record = match added {
            Err(AdminError::AlreadyIssued(kid)) => return Ok(Err(kid)),
            other => other?,
        };
        audit("key.issue", &record.tenant_id, Some(&record.kid));
        Ok(Ok(IssuedKey {
            view: KeyView::of(&record, api.now()),
            key: plaintext.expose().to_owned(),
            previous_key_expires_at: None,
        }))
    }
    .await;
    match result {
        Ok(Ok(issued)) => answer(&headers, StatusCode::CREATED, Ok(issued)),
        Ok(Err(kid)) => already_issued(&headers, &kid),
        Err(refusal) => answer::<IssuedKey>(&headers, StatusCode::CREATED, Err(refusal)),
    }
}

/// 409 40905 for a repeated `requestId`, naming the key it produced (its
/// id only: the plaintext was in the first answer and is stored nowhere).
fn already_issued(headers: &HeaderMap, kid: &KeyId) -> Response {
    let kind = ErrorKind::KeyAlreadyIssued;
    let rid = request_id(headers);
    let mut res = error_response::<axum::body::Body>(kind, rid);
    let body = serde_json::json!({
        "errorCode": kind.code(),
        "message": kind.message(),
        "requestId": rid,
        "keyId": kid.as_str(),
    });
    *res.body_mut() = axum::body::Body::from(body.to_string());
    res
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageView {
    tenant_id: String,
    /// Whether a rate or a quota applies to the tenant at all.
    limited: bool,
    rate_per_second: Option<f64>,
    burst: Option<u32>,
    #[serde(flatten)]
    usage: Option<Usage>,
    /// The limiter's mode in force: `redis`, `local`, `open` or `closed`.
    limiter_mode: &'static str,
}

async fn usage(State(api): Api, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        api.authorize(&headers)?;
        let tenant = api.store.tenant(&id).await?;
        let Some((limiter, default_rate)) = &api.limiter else {
            return Err(Refusal(ErrorKind::LimiterUnavailable));
        };
        let s = &tenant.settings;
        let limit = limit_of(s.rate_per_second, s.burst, s.monthly_quota, *default_rate);
        let usage = match limit {
            Some(limit) => Some(
                limiter
                    .usage(&tenant.id, limit)
                    .await
                    .map_err(|_| Refusal(ErrorKind::LimiterUnavailable))?,
            ),
            None => None,
        };
        Ok(UsageView {
            tenant_id: tenant.id,
            limited: limit.is_some(),
            rate_per_second: limit.map(|l| l.rate_per_second),
            burst: limit.map(|l| l.burst),
            usage,
            limiter_mode: limiter.health().mode,
        })
    }
    .await;
    answer(&headers, StatusCode::OK, result)
}

/// The stored audit record, as written (JSON), by the vendor's transactionId.
async fn audit_record(
    State(api): Api,
    Path(transaction_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        api.authorize(&headers)?;
        let audit = api
            .audit
            .as_ref()
            .ok_or(Refusal(ErrorKind::AuditLookupUnavailable))?;
        match audit.lookup(&transaction_id).await {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Err(Refusal(ErrorKind::AuditRecordNotFound)),
            Err(LookupError::Unsupported) => Err(Refusal(ErrorKind::AuditLookupUnavailable)),
            Err(LookupError::Unavailable(why)) => {
                tracing::warn!(error = %why, "audit lookup failed");
                Err(Refusal(ErrorKind::StoreUnavailable))
            }
        }
    }
    .await;
    match result {
        // The record as written: already JSON.
        Ok(record) => json_response(StatusCode::OK, record),
        Err(Refusal(kind)) => error_response(kind, request_id(&headers)),
    }
}

async fn list_keys(State(api): Api, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        api.authorize(&headers)?;
        let now = api.now();
        let keys = api.store.keys(&id).await?;
        Ok(keys.iter().map(|k| KeyView::of(k, now)).collect::<Vec<_>>())
    }
    .await;
    answer(&headers, StatusCode::OK, result)
}

async fn revoke_key(State(api): Api, Path(kid): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        api.authorize(&headers)?;
        let record = api.store.revoke_key(&kid).await?;
        audit("key.revoke", &record.tenant_id, Some(&record.kid));
        Ok(KeyView::of(&record, api.now()))
    }
    .await;
    answer(&headers, StatusCode::OK, result)
}

async fn rotate_key(
    State(api): Api,
    Path(kid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        api.authorize(&headers)?;
        let req: Rotate = parse(&body)?;
        let grace = Duration::from_secs(req.grace_seconds);
        if grace > MAX_GRACE {
            return Err(Refusal(ErrorKind::InvalidSetting));
        }
        // The new key belongs to the old key's tenant.
        let tenant = old_key_tenant(&api, &kid).await?;
        let (mut record, plaintext) = fresh_key(&api, &tenant, None);
        record.rotated_from = kid.parse().ok();
        let old_until = Timestamp(api.clock.now() + grace);
        let old = api
            .store
            .rotate_key(&kid, record.clone(), old_until)
            .await?;
        audit("key.rotate", &old.tenant_id, Some(&record.kid));
        Ok(IssuedKey {
            view: KeyView::of(&record, api.now()),
            key: plaintext.expose().to_owned(),
            previous_key_expires_at: old.expires_at,
        })
    }
    .await;
    answer(&headers, StatusCode::CREATED, result)
}

/// The tenant of a key, found through the tenant list (admin calls are
/// rare; the request path never does this).
async fn old_key_tenant(api: &AdminApi, kid: &str) -> Result<String, Refusal> {
    if kid.parse::<KeyId>().is_err() {
        return Err(Refusal(ErrorKind::KeyNotFound));
    }
    for t in api.store.tenants().await? {
        if api
            .store
            .keys(&t.id)
            .await?
            .iter()
            .any(|k| k.kid.as_str() == kid)
        {
            return Ok(t.id);
        }
    }
    Err(Refusal(ErrorKind::KeyNotFound))
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

    /// The document and the router name the same admin routes.
    #[test]
    fn the_document_lists_exactly_the_admin_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                if path.starts_with("/admin/") {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
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

    /// Every listed route exists in the router (no 404 or 405 from routing).
    #[tokio::test]
    async fn every_listed_route_is_routed() {
        let app = api();
        for (method, path) in ROUTES {
            let path = path
                .replace("{id}", "nobody")
                .replace("{keyId}", "abcdefabcdef");
            let req = http::Request::builder()
                .method(*method)
                .uri(&path)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(axum::body::Body::from("{}"))
                .unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            assert_ne!(
                res.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&body);
            // A missing route answers axum's empty 404; ours name a tenant or key.
            assert!(!text.is_empty(), "{method} {path} is not routed");
        }
    }
}
