//! Shared vocabulary of the livegate request path.
//!
//! Owns:
//! - the one list of errors the gateway answers itself ([`ErrorKind`]):
//!   each kind's HTTP status, stable `errorCode` and fixed message, and the
//!   one renderer that turns a kind into the response in the vendor's shape
//!   ([`error_response`]). The README's error table is checked against
//!   [`ErrorKind::ALL`] by a test. Messages are static strings on purpose:
//!   an error body can never echo a key, an image or any other input.
//! - the [`exchange`] record: one per liveness request, filled by every
//!   layer, emitted once to a sink (log line now; audit, metrics later);
//! - the [`Clock`], [`Timestamp`] and [`Secret`] types every crate shares,
//!   and the one [`hex`] encoder;
//! - the `[server]` section's settings ([`server::ServerSettings`]: the
//!   connection edge and admission), and the [`serde_duration`] helpers
//!   every crate's settings read their `*_ms` keys with;
//! - [`tenant`]: how layers read the request's resolved tenant policy.
//!
//! It does not decide *when* an error happens: each crate has its own typed
//! errors, gathered into the stack's one error type by the binary, which
//! implements [`ToErrorKind`].

pub mod admission;
mod error;
pub mod exchange;
pub mod hex;
mod secret;
pub mod serde_duration;
pub mod server;
pub mod single_headers;
pub mod tenant;
mod time;

pub use error::{
    ErrorKind, REQUEST_ID_HEADER, TRANSACTION_ID_HEADER, ToErrorKind, error_response,
    error_response_retry, request_id,
};
pub use secret::Secret;
pub use tenant::Tenanted;
pub use time::{Clock, SystemClock, Timestamp, TimestampError};
