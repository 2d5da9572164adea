//! A tenant's usage: its limit and what the gateway's limiter has counted.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use livegate_core::ErrorKind;
use livegate_ratelimit::limit_of;

use crate::wire::UsageOut;
use crate::{AdminApi, Refusal};

/// `GET /admin/v1/tenants/{id}/usage`.
pub(crate) async fn usage(
    State(api): State<Arc<AdminApi>>,
    Path(id): Path<String>,
) -> Result<Json<UsageOut>, Refusal> {
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
    Ok(Json(UsageOut {
        tenant_id: tenant.id,
        limited: limit.is_some(),
        rate_per_second: limit.map(|l| l.rate_per_second),
        burst: limit.map(|l| l.burst),
        usage,
        limiter_mode: limiter.health().mode,
    }))
}
