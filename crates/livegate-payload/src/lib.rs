//! Payload handling for livegate: turns a client's upload into what the vendor accepts,
//! or a precise reason to refuse it before a vendor call is spent.
//!
//! This crate owns:
//! - **base64 normalization** ([`normalize_into`], and [`normalize_base64`] as the
//!   reference): strips a `data:image/…;base64,` prefix and whitespace, accepts the
//!   URL-safe alphabet, missing padding and non-zero trailing bits, and yields canonical
//!   padded standard base64.
//! - **image sniffing** ([`sniff`]): format by signature (JPEG, PNG, WebP, GIF) and
//!   dimensions from the header only; the image is never decoded.
//! - **the structural check** ([`check_structure`], [`StructureCheck`]): the
//!   whole image is there (JPEG EOI after scan data, PNG chunk CRCs and IEND,
//!   WebP RIFF and chunk sizes, GIF trailer), walked without a pixel decode.
//! - **the image policy** ([`ImagePolicy`], with a tenant's [`ImageOverrides`]).
//! - **the pipeline** the layer calls: [`prepare_base64`] for base64 text,
//!   [`prepare_bytes`] for raw images — both yield the vendor body and the image's
//!   facts (format, size, SHA-256), never holding the decoded image whole.
//!   The structural check reads the same decoded chunks as the SHA-256.
//! - **body parsing** ([`body`]): `Content-Type` dispatch, the JSON reader and the
//!   multipart reader, all fuzzed.
//! - **the tower layer** ([`PayloadLayer`]) that puts these on the request path.
//!
//! It does not own status codes (the binary maps [`BodyError`] and [`PayloadError`] to
//! error kinds), the per-tenant policy lookup (given to the layer as a function), or the
//! vendor call. Everything but the layer is pure: no I/O, no global state, so it is
//! property-tested and fuzzed in isolation.
//!
//! Inputs are up to 10 MiB on every request, so the hot path avoids copies: canonical
//! input costs one chunked decode (hashed and sniffed on the way) and is forwarded
//! without a copy; other input one cleaning copy into the final vendor body, then the
//! same decode. Nothing here panics on any input, and no error value or `Debug` output
//! contains any part of the image, which is biometric data.

pub mod body;
mod format;
pub mod layer;
mod normalize;
mod policy;
mod prepare;
mod sniff;
mod structure;

pub use body::BodyError;
pub use format::{FormatSet, ImageFormat, ParseImageFormatError};
pub use layer::{AcceptedImage, ImagePolicySource, Payload, PayloadLayer};
pub use normalize::{Decoded, NormalizeError, encode_canonical, normalize_base64, normalize_into};
pub use policy::{ImageOverrides, ImagePolicy, PolicyError};
pub use prepare::{
    PayloadError, Prepared, VENDOR_BODY_HEAD, VENDOR_BODY_TAIL, encode_vendor_body, prepare_base64,
    prepare_base64_keeping, prepare_bytes, prepare_canonical, prepare_canonical_keeping,
    vendor_body,
};
pub use sniff::{ImageError, ImageInfo, sniff};
pub use structure::{StructureCheck, check_structure};
