//! Tenants: create, list, read, change, disable and enable; and the checks
//! of the settings an operator sends.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use livegate_auth::{Tenant, TenantUpdate};
use livegate_core::ErrorKind;

use crate::access::Caller;
use crate::body::JsonBody;
use crate::wire::{TenantFields, TenantOut, WithId};
use crate::{AdminApi, Refusal, audit_event};

const MAX_RATE: f64 = 100_000.0;
const MAX_BURST: u32 = 100_000;
const MAX_QUOTA: u64 = 1_000_000_000_000;
const MAX_NAME_LEN: usize = 200;

type Api = State<Arc<AdminApi>>;
type Answer<T> = Result<T, Refusal>;

/// `POST /admin/v1/tenants` → 201.
pub(crate) async fn create(
    State(api): Api,
    caller: Caller,
    body: JsonBody,
) -> Answer<(StatusCode, Json<TenantOut>)> {
    let new: WithId<TenantFields> = body.parse()?;
    if !valid_tenant_id(&new.id) {
        return Err(Refusal(ErrorKind::InvalidSetting));
    }
    let update = checked(&api, new.rest)?;
    let now = api.now();
    let mut tenant = Tenant::new(new.id);
    update.apply(&mut tenant, now);
    tenant.created_at = Some(now);
    let tenant = api.store.create_tenant(tenant).await?;
    audit_event("tenant.create", &caller, &tenant.id, None);
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

/// `GET /admin/v1/tenants`.
pub(crate) async fn list(State(api): Api) -> Answer<Json<Vec<TenantOut>>> {
    let all = api.store.tenants().await?;
    Ok(Json(all.into_iter().map(TenantOut::from).collect()))
}

/// `GET /admin/v1/tenants/{id}`.
pub(crate) async fn get(State(api): Api, Path(id): Path<String>) -> Answer<Json<TenantOut>> {
    Ok(Json(api.store.tenant(&id).await?.into()))
}

/// `PATCH /admin/v1/tenants/{id}`.
pub(crate) async fn update(
    State(api): Api,
    Path(id): Path<String>,
    caller: Caller,
    body: JsonBody,
) -> Answer<Json<TenantOut>> {
    let update = checked(&api, body.parse()?)?;
    let tenant = api.store.update_tenant(&id, update, api.now()).await?;
    audit_event("tenant.update", &caller, &tenant.id, None);
    Ok(Json(tenant.into()))
}

/// `POST /admin/v1/tenants/{id}/disable`.
pub(crate) async fn disable(
    State(api): Api,
    Path(id): Path<String>,
    caller: Caller,
) -> Answer<Json<TenantOut>> {
    set_disabled(&api, &id, &caller, true).await
}

/// `POST /admin/v1/tenants/{id}/enable`.
pub(crate) async fn enable(
    State(api): Api,
    Path(id): Path<String>,
    caller: Caller,
) -> Answer<Json<TenantOut>> {
    set_disabled(&api, &id, &caller, false).await
}

async fn set_disabled(
    api: &AdminApi,
    id: &str,
    caller: &Caller,
    disabled: bool,
) -> Answer<Json<TenantOut>> {
    let tenant = api
        .store
        .set_tenant_disabled(id, disabled, api.now())
        .await?;
    let action = if disabled {
        "tenant.disable"
    } else {
        "tenant.enable"
    };
    audit_event(action, caller, &tenant.id, None);
    Ok(Json(tenant.into()))
}

fn valid_tenant_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks settings an operator sent; the update to apply.
fn checked(api: &AdminApi, fields: TenantFields) -> Result<TenantUpdate, Refusal> {
    let bad = || Refusal(ErrorKind::InvalidSetting);
    let update = TenantUpdate::from(fields);
    if let Some(r) = update.rate_per_second {
        if !(r.is_finite() && r > 0.0 && r <= MAX_RATE) {
            return Err(bad());
        }
    }
    if update.burst.is_some_and(|b| b == 0 || b > MAX_BURST) {
        return Err(bad());
    }
    if update
        .monthly_quota
        .is_some_and(|q| q == 0 || q > MAX_QUOTA)
    {
        return Err(bad());
    }
    if update.name.as_ref().is_some_and(|n| n.len() > MAX_NAME_LEN) {
        return Err(bad());
    }
    if let Some(o) = &update.images {
        if !api.images.with(o).problems().is_empty() {
            return Err(bad());
        }
    }
    if let Some(o) = &update.protection {
        if !api.protection.with(o).problems().is_empty() {
            return Err(bad());
        }
    }
    Ok(update)
}
