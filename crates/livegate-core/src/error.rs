use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::Serialize;

/// Header carrying the gateway's request id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Response header carrying the vendor's transactionId.
pub const TRANSACTION_ID_HEADER: &str = "x-transaction-id";

macro_rules! error_kinds {
    ($( $(#[$doc:meta])* $name:ident => ($status:ident, $code:literal, $msg:literal), )*) => {
        /// Every error the gateway answers itself, with a stable code.
        ///
        /// Codes 1016 and 1017 are the vendor's own; the gateway's codes are
        /// five digits, the first three being the HTTP status, so they never
        /// collide with the vendor's four-digit range.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind {
            $( $(#[$doc])* $name, )*
        }

        impl ErrorKind {
            /// All kinds, in table order (the README lists them in this order).
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$name),*];

            /// HTTP status of the response.
            pub fn status(self) -> StatusCode {
                match self { $(ErrorKind::$name => StatusCode::$status,)* }
            }

            /// The `errorCode` in the body; stable across releases.
            pub fn code(self) -> u32 {
                match self { $(ErrorKind::$name => $code,)* }
            }

            /// [`Self::code`] as text, e.g. for a metrics label.
            pub fn code_str(self) -> &'static str {
                match self { $(ErrorKind::$name => stringify!($code),)* }
            }

            /// The fixed `message` in the body.
            pub fn message(self) -> &'static str {
                match self { $(ErrorKind::$name => $msg,)* }
            }

            /// Short snake_case name, for logs and metrics labels.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorKind::$name => stringify!($name),)* }
            }
        }
    };
}

error_kinds! {
    /// `faceImage` missing, null or empty (also: a data-URI prefix with nothing after it, a multipart body without the part). The vendor's own code.
    FaceImageRequired => (BAD_REQUEST, 1016, "faceImage is required"),
    /// The body is not valid JSON, nests deeper than the parser allows, or ends early.
    MalformedJson => (BAD_REQUEST, 40001, "request body is not valid JSON"),
    /// Valid JSON, but not an object.
    NotAnObject => (BAD_REQUEST, 40002, "request body must be a JSON object"),
    /// `faceImage` is present but not a string.
    FaceImageNotString => (BAD_REQUEST, 40003, "faceImage must be a base64 string"),
    /// `faceImage` appears more than once in the object (or multipart form).
    DuplicateFaceImage => (BAD_REQUEST, 40004, "faceImage must appear only once"),
    /// A multipart/form-data body that cannot be parsed (bad boundary, truncated part).
    MalformedMultipart => (BAD_REQUEST, 40005, "multipart body is malformed"),
    /// The client stopped sending the body, or sent it too slowly.
    BodyReadFailed => (BAD_REQUEST, 40006, "request body could not be read"),
    /// An admin request whose body is not the JSON the route takes (wrong type, unknown or missing field).
    InvalidAdminRequest => (BAD_REQUEST, 40007, "request body does not match the admin API"),
    /// A tenant setting out of range: a rate, burst or quota of zero or absurd size, an image policy that refuses every image, a bad tenant id, an expiry in the past or a grace period out of range.
    InvalidSetting => (BAD_REQUEST, 40008, "invalid setting"),
    /// An `Idempotency-Key` header that is empty, longer than 255 characters or not visible ASCII.
    InvalidIdempotencyKey => (BAD_REQUEST, 40009, "Idempotency-Key must be 1 to 255 visible ASCII characters"),
    /// `x-api-key`, `Authorization`, `Idempotency-Key` or `traceparent` appears more than once with different values (the same value repeated is accepted).
    DuplicateHeader => (BAD_REQUEST, 40010, "x-api-key, Authorization, Idempotency-Key and traceparent must each appear only once"),
    /// Neither `x-api-key` nor `Authorization: Bearer` carries a key.
    KeyMissing => (UNAUTHORIZED, 40101, "missing API key: send x-api-key or Authorization: Bearer"),
    /// The key is malformed or unknown (or its secret does not match).
    KeyInvalid => (UNAUTHORIZED, 40102, "invalid API key"),
    /// The key was revoked.
    KeyRevoked => (UNAUTHORIZED, 40103, "API key has been revoked"),
    /// The key is past its expiry time.
    KeyExpired => (UNAUTHORIZED, 40104, "API key has expired"),
    /// `x-api-key` and `Authorization` carry two different keys.
    KeyConflict => (UNAUTHORIZED, 40105, "x-api-key and Authorization carry different keys"),
    /// An admin route without the admin token, or with a wrong one.
    AdminTokenInvalid => (UNAUTHORIZED, 40106, "missing or invalid admin token"),
    /// `GET /metrics` without the bearer token `ops.metrics_token` names (only when one is set), or with a wrong one.
    MetricsTokenInvalid => (UNAUTHORIZED, 40107, "missing or invalid metrics token"),
    /// The key is valid but its tenant is disabled.
    TenantDisabled => (FORBIDDEN, 40301, "tenant is disabled"),
    /// A valid admin token without the scope the route needs (`read`: GET routes; `keys`: issue, rotate, revoke; `admin`: everything), or a `keys` token acting on a tenant outside its `tenants`.
    AdminScopeMissing => (FORBIDDEN, 40302, "the admin token's scopes do not allow this request"),
    /// No such route.
    NotFound => (NOT_FOUND, 40401, "no such route"),
    /// No tenant with that id (admin API).
    TenantNotFound => (NOT_FOUND, 40402, "no such tenant"),
    /// No key with that id (admin API).
    KeyNotFound => (NOT_FOUND, 40403, "no such key"),
    /// No audit record with this transactionId (unknown, or older than `audit.lookup_retention_hours`).
    AuditRecordNotFound => (NOT_FOUND, 40404, "no such audit record"),
    /// Lookups by transactionId need the Redis audit sink (`audit.sink = "redis"`).
    AuditLookupUnavailable => (NOT_FOUND, 40405, "audit lookup needs audit.sink = redis"),
    /// The route exists but not with this method.
    MethodNotAllowed => (METHOD_NOT_ALLOWED, 40501, "method not allowed"),
    /// A tenant with that id already exists (admin API).
    TenantExists => (CONFLICT, 40901, "a tenant with this id already exists"),
    /// The key is revoked and cannot be rotated (admin API).
    KeyAlreadyRevoked => (CONFLICT, 40902, "the key is revoked"),
    /// The image repeats one this tenant sent within its replay window (exactly or perceptually), and the tenant's replay policy is `reject`; the response names the earlier transaction in `x-livegate-replay-of`. No vendor call is made.
    ReplayRejected => (CONFLICT, 40903, "image repeats an earlier request"),
    /// Another request with the same `Idempotency-Key` is still in progress after waiting `protection.idempotency_wait_ms`; retry after `Retry-After`.
    IdempotencyInProgress => (CONFLICT, 40904, "a request with this Idempotency-Key is still in progress"),
    /// A key issuance (admin API) whose `requestId` already produced a key within 24 hours: nothing is written, and the answer's `keyId` names that key (never its secret, which is stored nowhere: revoke or rotate it if its plaintext was lost).
    KeyAlreadyIssued => (CONFLICT, 40905, "a key was already issued for this requestId"),
    /// The client took longer than the configured body read timeout to send its body.
    BodyReadTimeout => (REQUEST_TIMEOUT, 40801, "request body was not received in time"),
    /// After `server.upload_grace_ms`, the body arrived slower than `server.min_upload_bytes_per_second` (averaged over `server.upload_rate_window_ms`); its reservation of the body budget is given back.
    UploadTooSlow => (REQUEST_TIMEOUT, 40802, "request body is arriving too slowly"),
    /// The body is larger than the configured limit (by Content-Length or as streamed).
    BodyTooLarge => (PAYLOAD_TOO_LARGE, 41301, "request body is too large"),
    /// Content-Type is not JSON, multipart/form-data or a raw image/jpeg, image/png or image/webp.
    UnsupportedMediaType => (UNSUPPORTED_MEDIA_TYPE, 41501, "unsupported content type: send application/json, multipart/form-data or a raw image"),
    /// The tenant is over its rate (requests per second with a burst); retry after `Retry-After`.
    RateLimited => (TOO_MANY_REQUESTS, 42901, "rate limit exceeded"),
    /// The tenant's monthly quota is spent; `Retry-After` points at the next month (UTC).
    QuotaExceeded => (TOO_MANY_REQUESTS, 42902, "monthly quota exceeded"),
    /// The gateway-wide cap protecting the vendor account is reached (all tenants together); retry after `Retry-After`.
    GlobalRateLimited => (TOO_MANY_REQUESTS, 42903, "gateway-wide rate limit exceeded, retry later"),
    /// `faceImage` is not valid base64 even after normalization.
    InvalidBase64 => (UNPROCESSABLE_ENTITY, 42201, "faceImage is not valid base64"),
    /// The decoded bytes are not an image of a known format.
    NotAnImage => (UNPROCESSABLE_ENTITY, 42202, "faceImage is not a supported image"),
    /// A known image format that this deployment or tenant does not accept (GIF by default).
    ImageFormatNotAllowed => (UNPROCESSABLE_ENTITY, 42203, "image format is not accepted"),
    /// The image header is truncated or structurally invalid.
    ImageCorrupt => (UNPROCESSABLE_ENTITY, 42204, "image header is truncated or corrupt"),
    /// Width or height below the configured minimum (192 px by default).
    ImageTooSmall => (UNPROCESSABLE_ENTITY, 42205, "image is too small"),
    /// Width or height above the configured maximum (8192 px by default).
    ImageTooLarge => (UNPROCESSABLE_ENTITY, 42206, "image dimensions are too large"),
    /// The `Idempotency-Key` was used within its retention with a different image.
    IdempotencyKeyReused => (UNPROCESSABLE_ENTITY, 42207, "Idempotency-Key was already used with a different image"),
    /// The header is readable but the image is cut short or broken (JPEG without scan data or EOI, PNG without IEND or with a bad chunk CRC, WebP whose RIFF or chunk sizes disagree with the data, GIF without its trailer); no vendor call is made.
    ImageTruncated => (UNPROCESSABLE_ENTITY, 42208, "image data is truncated or corrupt"),
    /// An unexpected gateway fault (a bug); never caused by client input.
    Internal => (INTERNAL_SERVER_ERROR, 50001, "internal gateway error"),
    /// The vendor could not be reached (connect failure, reset, TLS failure).
    VendorUnreachable => (BAD_GATEWAY, 50201, "liveness vendor is unreachable"),
    /// The vendor answered something that is not a JSON object, or too large a body.
    VendorBadResponse => (BAD_GATEWAY, 50202, "liveness vendor answered an invalid response"),
    /// The vendor refused the gateway's own credentials (vendor 401/403): an operator problem, not the client's.
    VendorAuth => (BAD_GATEWAY, 50203, "liveness vendor rejected the gateway's credentials"),
    /// The gateway's key store could not be consulted.
    StoreUnavailable => (SERVICE_UNAVAILABLE, 50301, "gateway key store is unavailable"),
    /// The gateway is at its limit of concurrent liveness requests or of in-flight body bytes; retry after `Retry-After`.
    Overloaded => (SERVICE_UNAVAILABLE, 50302, "gateway is overloaded, retry later"),
    /// The vendor is failing and its circuit is open: no call is made until `Retry-After`.
    VendorCircuitOpen => (SERVICE_UNAVAILABLE, 50303, "liveness vendor is unavailable, retry later"),
    /// The shared rate limiter cannot be reached and `redis.fail_mode` is `closed`.
    LimiterUnavailable => (SERVICE_UNAVAILABLE, 50304, "rate limiter is unavailable, retry later"),
    /// The audit sink cannot take another record within its wait; refused before the vendor is called.
    AuditUnavailable => (SERVICE_UNAVAILABLE, 50305, "audit trail is unavailable, retry later"),
    /// The replay or idempotency store cannot be reached and `redis.fail_mode` is `closed`.
    ProtectionUnavailable => (SERVICE_UNAVAILABLE, 50306, "protection store is unavailable, retry later"),
    /// The tenant's replay policy is `reject` and its image could not be fingerprinted in time: no decode slot within `protection.slot_wait_ms` (the tenant already holds its share of them), or the fingerprint took longer than `protection.fingerprint_deadline_ms`; retry after `Retry-After`. Other tenants are not affected; a `flag` tenant goes on with the exact check instead.
    FingerprintBusy => (SERVICE_UNAVAILABLE, 50307, "image fingerprinting is busy, retry later"),
    /// The vendor did not answer within the configured timeout.
    VendorTimeout => (GATEWAY_TIMEOUT, 50401, "liveness vendor timed out"),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "errorCode")]
    error_code: u32,
    message: &'a str,
    #[serde(rename = "requestId")]
    request_id: &'a str,
}

/// The error type of a request stack: each layer's typed error, gathered
/// into one type (the binary's), which says which [`ErrorKind`] the client
/// gets. Its `Display` is for operators' logs only and is never sent.
pub trait ToErrorKind: std::error::Error + Send + Sync + 'static {
    fn error_kind(&self) -> ErrorKind;

    /// When the client may retry, sent as `Retry-After` (whole seconds,
    /// at least 1); for the 503s of load shedding and an open circuit.
    fn retry_after(&self) -> Option<std::time::Duration> {
        None
    }
}

/// The request id the request-id layer put on the request, or `""`.
pub fn request_id(headers: &HeaderMap) -> &str {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The one error renderer: status, JSON body in the vendor's shape, the
/// request id in the body and in `x-request-id`, and the [`ErrorKind`]
/// itself in the response extensions, so layers above (the exchange
/// record, metrics) know what was answered without reading the body.
pub fn error_response<B: From<Bytes>>(kind: ErrorKind, request_id: &str) -> Response<B> {
    error_response_retry(kind, request_id, None)
}

/// [`error_response`] with a `Retry-After` header when `retry_after` is set.
pub fn error_response_retry<B: From<Bytes>>(
    kind: ErrorKind,
    request_id: &str,
    retry_after: Option<std::time::Duration>,
) -> Response<B> {
    let body = ErrorBody {
        error_code: kind.code(),
        message: kind.message(),
        request_id,
    };
    // Serializing a struct of a number and plain strings cannot fail.
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut res = Response::new(B::from(Bytes::from(json)));
    *res.status_mut() = kind.status();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID_HEADER, v);
    }
    if let Some(after) = retry_after {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    res.extensions_mut().insert(kind);
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_match_their_status() {
        let mut seen = HashSet::new();
        for &k in ErrorKind::ALL {
            assert!(seen.insert(k.code()), "duplicate code {}", k.code());
            if k.code() >= 10_000 {
                assert_eq!(k.code() / 100, u32::from(k.status().as_u16()), "{k:?}");
            }
        }
    }

    #[test]
    fn client_errors_are_never_5xx() {
        for &k in ErrorKind::ALL {
            let s = k.status().as_u16();
            let vendor_side = matches!(
                k,
                ErrorKind::Internal
                    | ErrorKind::VendorUnreachable
                    | ErrorKind::VendorBadResponse
                    | ErrorKind::VendorAuth
                    | ErrorKind::VendorTimeout
                    | ErrorKind::StoreUnavailable
                    | ErrorKind::Overloaded
                    | ErrorKind::VendorCircuitOpen
                    | ErrorKind::LimiterUnavailable
                    | ErrorKind::AuditUnavailable
                    | ErrorKind::ProtectionUnavailable
                    | ErrorKind::FingerprintBusy
            );
            assert_eq!(s >= 500, vendor_side, "{k:?}");
        }
    }

    #[test]
    fn body_has_the_vendor_shape() {
        let res: Response<Bytes> = error_response(ErrorKind::KeyInvalid, "req-1");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()[REQUEST_ID_HEADER], "req-1");
        assert_eq!(
            res.extensions().get::<ErrorKind>(),
            Some(&ErrorKind::KeyInvalid)
        );
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(v["errorCode"], 40102);
        assert_eq!(v["message"], "invalid API key");
        assert_eq!(v["requestId"], "req-1");
    }

    /// The README's error table is the documentation users rely on: every
    /// kind must have its row, with the same status, code and message.
    #[test]
    fn readme_error_table_matches() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let doc = std::fs::read_to_string(path).expect("README.md");
        for &k in ErrorKind::ALL {
            let row = format!(
                "| {} | {} | `{}` | {} |",
                k.status().as_u16(),
                k.code(),
                k.as_str(),
                k.message()
            );
            assert!(doc.contains(&row), "README.md lacks the row:\n{row}");
        }
    }
}
