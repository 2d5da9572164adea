//! A tenant's keys: issue (once per `requestId`), list, revoke, rotate.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use livegate_auth::key::KeyId;
use livegate_auth::{AdminError, KeyRecord, generate};
use livegate_core::{ErrorKind, Secret, Timestamp, error_response, request_id};

use crate::access::Caller;
use crate::body::JsonBody;
use crate::wire::{IssuedKey, KeyOut, NewKey, Rotate};
use crate::{AdminApi, MAX_GRACE, Refusal, audit_event, find_key_tenant};

/// Longest accepted `requestId` of a key issuance.
const MAX_REQUEST_ID_LEN: usize = 255;

type Api = State<Arc<AdminApi>>;
type Answer<T> = Result<T, Refusal>;

/// A fresh key for `tenant`: its record (hash only) and its plaintext.
fn fresh_key(api: &AdminApi, tenant: &str, expires_at: Option<Timestamp>) -> (KeyRecord, Secret) {
    let new = generate();
    let mut record = KeyRecord::new(new.kid.clone(), tenant, new.hash(&api.pepper));
    record.expires_at = expires_at;
    record.created_at = Some(api.now());
    (record, new.plaintext)
}

fn valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.bytes().all(|c| (0x21..=0x7e).contains(&c))
}

/// `POST /admin/v1/tenants/{id}/keys` → 201, or 409 40905 naming the key a
/// repeated `requestId` already made.
pub(crate) async fn issue(
    State(api): Api,
    Path(id): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
) -> Answer<Response> {
    let req: NewKey = body.parse()?;
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
        Err(AdminError::AlreadyIssued(kid)) => return Ok(already_issued(&headers, &kid)),
        other => other?,
    };
    audit_event("key.issue", &caller, &record.tenant_id, Some(&record.kid));
    let issued = IssuedKey {
        key: KeyOut::of(&record, api.now()),
        plaintext: plaintext.expose().to_owned(),
        previous_key_expires_at: None,
    };
    Ok((StatusCode::CREATED, Json(issued)).into_response())
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

/// `GET /admin/v1/tenants/{id}/keys`: never a secret or a hash.
pub(crate) async fn list(State(api): Api, Path(id): Path<String>) -> Answer<Json<Vec<KeyOut>>> {
    let now = api.now();
    let keys = api.store.keys(&id).await?;
    Ok(Json(keys.iter().map(|k| KeyOut::of(k, now)).collect()))
}

/// `POST /admin/v1/keys/{keyId}/revoke`.
pub(crate) async fn revoke(
    State(api): Api,
    Path(kid): Path<String>,
    caller: Caller,
) -> Answer<Json<KeyOut>> {
    let record = api.store.revoke_key(&kid).await?;
    audit_event("key.revoke", &caller, &record.tenant_id, Some(&record.kid));
    Ok(Json(KeyOut::of(&record, api.now())))
}

/// `POST /admin/v1/keys/{keyId}/rotate` → 201 with the new key; the old one
/// works for `graceSeconds` more.
pub(crate) async fn rotate(
    State(api): Api,
    Path(kid): Path<String>,
    caller: Caller,
    body: JsonBody,
) -> Answer<(StatusCode, Json<IssuedKey>)> {
    let req: Rotate = body.parse()?;
    let grace = Duration::from_secs(req.grace_seconds);
    if grace > MAX_GRACE {
        return Err(Refusal(ErrorKind::InvalidSetting));
    }
    // The new key belongs to the old key's tenant.
    let tenant = find_key_tenant(api.store.as_ref(), &kid)
        .await?
        .ok_or(Refusal(ErrorKind::KeyNotFound))?;
    let (mut record, plaintext) = fresh_key(&api, &tenant, None);
    record.rotated_from = kid.parse().ok();
    let old_until = Timestamp(api.clock.now() + grace);
    let old = api
        .store
        .rotate_key(&kid, record.clone(), old_until)
        .await?;
    audit_event("key.rotate", &caller, &old.tenant_id, Some(&record.kid));
    let issued = IssuedKey {
        key: KeyOut::of(&record, api.now()),
        plaintext: plaintext.expose().to_owned(),
        previous_key_expires_at: old.expires_at,
    };
    Ok((StatusCode::CREATED, Json(issued)))
}
