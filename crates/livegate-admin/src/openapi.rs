//! The OpenAPI 3.1 document of the public and admin APIs.

use axum::response::IntoResponse;
use http::header;

/// The document, served at `GET /admin/v1/openapi.json`; tests hold it to
/// the routes that exist and the scope each needs.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /admin/v1/openapi.json`.
pub(crate) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
