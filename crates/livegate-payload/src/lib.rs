//! Payload normalization for livegate: turns a client's `faceImage` into what the vendor
//! accepts, or a precise reason to refuse it before a vendor call is spent.
//!
//! This crate owns:
//! - **base64 normalization** ([`normalize_base64`]): strips a `data:image/…;base64,`
//!   prefix and whitespace, accepts the URL-safe alphabet, missing padding and non-zero
//!   trailing bits, and yields canonical padded standard base64. Canonical input (the
//!   common case) is recognised with a single strict decode and forwarded unchanged.
//! - **image sniffing** ([`sniff`]): format by signature (JPEG, PNG, WebP, GIF) and
//!   dimensions from the header only; the image is never decoded.
//! - **the image policy** ([`ImagePolicy`]): allowed formats and size bounds.
//! - **the pipeline** the gateway calls: [`prepare_base64`] for JSON bodies,
//!   [`prepare_bytes`] for multipart parts and raw image bodies.
//!
//! It does not own HTTP, body limits, error codes or status mapping (livegate-core), the
//! per-tenant policy configuration (livegate-config), or the audit digest. It is pure: no
//! I/O, no async, no global state, so it can be property-tested and fuzzed in isolation.
//!
//! Inputs are up to 10 MiB on every request, so the hot path avoids copies: one decode for
//! canonical input, one cleaning copy plus one decode otherwise. Nothing here panics on any
//! input, and no error value or `Debug` output contains any part of the image, which is
//! biometric data.

mod format;
mod normalize;
mod policy;
mod prepare;
mod sniff;

pub use format::{ImageFormat, ParseImageFormatError};
pub use normalize::{Decoded, NormalizeError, encode_canonical, normalize_base64};
pub use policy::{ImagePolicy, PolicyError};
pub use prepare::{PayloadError, Prepared, prepare_base64, prepare_bytes};
pub use sniff::{ImageError, ImageInfo, sniff};
