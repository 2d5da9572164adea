//! Shared vocabulary of the livegate request path.
//!
//! This crate owns the one list of errors the gateway answers itself
//! ([`ErrorKind`]): each kind's HTTP status, its stable `errorCode` and its
//! fixed message, and how that becomes a response body in the vendor's shape
//! (`{"errorCode": …, "message": "…", "requestId": "…"}`). The README's error
//! table is checked against [`ErrorKind::ALL`] by a test, so the two cannot
//! drift apart.
//!
//! It does not decide *when* an error happens: each layer maps its own
//! failures onto a kind. Messages are static strings on purpose: an error
//! body can never echo a key, an image or any other client input.

mod error;

pub use error::{ErrorKind, REQUEST_ID_HEADER, TRANSACTION_ID_HEADER, error_response, request_id};
