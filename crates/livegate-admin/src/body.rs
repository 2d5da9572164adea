//! Reading an admin request's body: bounded, and every refusal in the error
//! shape (a body over [`MAX_BODY`] is 413 41301, a broken upload 400 40006),
//! never the framework's plain-text answers.

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use http::header;
use livegate_core::ErrorKind;
use serde::de::DeserializeOwned;

use crate::Refusal;

/// Largest admin request body, in bytes (2 MiB). Admin bodies are a few
/// hundred bytes; the bound only keeps one request from buffering more.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// An admin request's body, read whole (at most [`MAX_BODY`] bytes).
pub(crate) struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Refusal;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let too_large = Refusal(ErrorKind::BodyTooLarge);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large);
        }
        match http_body_util::BodyExt::collect(http_body_util::Limited::new(
            req.into_body(),
            MAX_BODY,
        ))
        .await
        {
            Ok(collected) => Ok(JsonBody(collected.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large),
            Err(_) => Err(Refusal(ErrorKind::BodyReadFailed)),
        }
    }
}

impl JsonBody {
    /// The body as `T`; an empty (or all-whitespace) body is `{}`.
    pub(crate) fn parse<T: DeserializeOwned>(&self) -> Result<T, Refusal> {
        let body: &[u8] = if self.0.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.0
        };
        serde_json::from_slice(body).map_err(|_| Refusal(ErrorKind::InvalidAdminRequest))
    }
}
