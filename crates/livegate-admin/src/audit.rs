//! Audit records by the vendor's transactionId (where the Redis sink keeps
//! them findable).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use http::header;
use livegate_audit::LookupError;
use livegate_core::ErrorKind;

use crate::{AdminApi, Refusal};

/// `GET /admin/v1/audit/{transactionId}`: the stored record as written.
pub(crate) async fn record(
    State(api): State<Arc<AdminApi>>,
    Path(transaction_id): Path<String>,
) -> Result<impl IntoResponse, Refusal> {
    let audit = api
        .audit
        .as_ref()
        .ok_or(Refusal(ErrorKind::AuditLookupUnavailable))?;
    match audit.lookup(&transaction_id).await {
        // Already JSON.
        Ok(Some(record)) => Ok(([(header::CONTENT_TYPE, "application/json")], record)),
        Ok(None) => Err(Refusal(ErrorKind::AuditRecordNotFound)),
        Err(LookupError::Unsupported) => Err(Refusal(ErrorKind::AuditLookupUnavailable)),
        Err(LookupError::Unavailable(why)) => {
            tracing::warn!(error = %why, "audit lookup failed");
            Err(Refusal(ErrorKind::StoreUnavailable))
        }
    }
}
