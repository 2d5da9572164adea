//! The stack's one error type: every layer's typed error, and the one
//! mapping of each onto the documented [`ErrorKind`]. Rendering is
//! [`livegate_core::error_response`], called by the exchange layer only.

use std::time::Duration;

use livegate_audit::AuditUnavailable;
use livegate_auth::AuthError;
use livegate_core::admission::Overloaded;
use livegate_core::single_headers::DuplicateHeader;
use livegate_core::{ErrorKind, ToErrorKind};
use livegate_payload::{BodyError, ImageError, NormalizeError, PayloadError, PolicyError};
use livegate_protect::ProtectError;
use livegate_ratelimit::Refused;
use livegate_upstream::UpstreamError;

/// Why the gateway answered a liveness request itself.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    #[error(transparent)]
    RateLimit(#[from] Refused),
    #[error(transparent)]
    Audit(#[from] AuditUnavailable),
    #[error(transparent)]
    Protect(#[from] ProtectError),
    #[error(transparent)]
    DuplicateHeader(#[from] DuplicateHeader),
}

/// When a client refused for load may retry.
const OVERLOADED_RETRY: Duration = Duration::from_secs(1);

impl ToErrorKind for GatewayError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            GatewayError::Auth(e) => auth(e),
            GatewayError::Body(e) => body(e),
            GatewayError::Payload(e) => payload(e),
            GatewayError::Upstream(e) => upstream(e),
            GatewayError::Overloaded(_) => ErrorKind::Overloaded,
            GatewayError::RateLimit(Refused::Rate { .. }) => ErrorKind::RateLimited,
            GatewayError::RateLimit(Refused::Quota { .. }) => ErrorKind::QuotaExceeded,
            GatewayError::RateLimit(Refused::Global { .. }) => ErrorKind::GlobalRateLimited,
            GatewayError::RateLimit(Refused::Unavailable) => ErrorKind::LimiterUnavailable,
            GatewayError::Audit(_) => ErrorKind::AuditUnavailable,
            GatewayError::DuplicateHeader(_) => ErrorKind::DuplicateHeader,
            GatewayError::Protect(e) => match e {
                ProtectError::InvalidIdempotencyKey => ErrorKind::InvalidIdempotencyKey,
                ProtectError::Replay => ErrorKind::ReplayRejected,
                ProtectError::KeyReused => ErrorKind::IdempotencyKeyReused,
                ProtectError::InProgress => ErrorKind::IdempotencyInProgress,
                ProtectError::Store(_) => ErrorKind::ProtectionUnavailable,
                ProtectError::Busy => ErrorKind::FingerprintBusy,
            },
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::Overloaded(o) => Some(o.retry_after),
            GatewayError::Body(BodyError::Overloaded) => Some(OVERLOADED_RETRY),
            GatewayError::Upstream(UpstreamError::CircuitOpen { retry_after }) => {
                Some(*retry_after)
            }
            GatewayError::RateLimit(
                Refused::Rate { retry_after }
                | Refused::Quota { retry_after }
                | Refused::Global { retry_after },
            ) => Some(*retry_after),
            GatewayError::RateLimit(Refused::Unavailable) => Some(OVERLOADED_RETRY),
            GatewayError::Audit(a) => Some(a.retry_after),
            GatewayError::Protect(
                ProtectError::InProgress | ProtectError::Store(_) | ProtectError::Busy,
            ) => Some(OVERLOADED_RETRY),
            _ => None,
        }
    }
}

fn auth(e: &AuthError) -> ErrorKind {
    match e {
        AuthError::Missing => ErrorKind::KeyMissing,
        AuthError::Conflicting => ErrorKind::KeyConflict,
        AuthError::Malformed | AuthError::Unknown => ErrorKind::KeyInvalid,
        AuthError::Revoked => ErrorKind::KeyRevoked,
        AuthError::Expired => ErrorKind::KeyExpired,
        AuthError::TenantDisabled => ErrorKind::TenantDisabled,
        AuthError::Store(_) => ErrorKind::StoreUnavailable,
    }
}

fn body(e: &BodyError) -> ErrorKind {
    match e {
        BodyError::UnsupportedMediaType => ErrorKind::UnsupportedMediaType,
        BodyError::FaceImageRequired => ErrorKind::FaceImageRequired,
        BodyError::MalformedJson => ErrorKind::MalformedJson,
        BodyError::NotAnObject => ErrorKind::NotAnObject,
        BodyError::FaceImageNotString => ErrorKind::FaceImageNotString,
        BodyError::DuplicateFaceImage => ErrorKind::DuplicateFaceImage,
        BodyError::MalformedMultipart => ErrorKind::MalformedMultipart,
        BodyError::TextNotUtf8 => ErrorKind::InvalidBase64,
        BodyError::TooLarge => ErrorKind::BodyTooLarge,
        BodyError::ReadFailed => ErrorKind::BodyReadFailed,
        BodyError::ReadTimeout => ErrorKind::BodyReadTimeout,
        BodyError::Overloaded => ErrorKind::Overloaded,
        BodyError::TooSlow => ErrorKind::UploadTooSlow,
    }
}

fn payload(e: &PayloadError) -> ErrorKind {
    match e {
        PayloadError::Normalize(NormalizeError::Empty) => ErrorKind::FaceImageRequired,
        PayloadError::Normalize(NormalizeError::InvalidBase64) => ErrorKind::InvalidBase64,
        PayloadError::Image(ImageError::Unrecognized) => ErrorKind::NotAnImage,
        PayloadError::Image(ImageError::Truncated(_) | ImageError::Corrupt(_)) => {
            ErrorKind::ImageCorrupt
        }
        PayloadError::Image(ImageError::Incomplete(_)) => ErrorKind::ImageTruncated,
        PayloadError::Policy(PolicyError::FormatNotAllowed(_)) => ErrorKind::ImageFormatNotAllowed,
        PayloadError::Policy(PolicyError::TooSmall { .. }) => ErrorKind::ImageTooSmall,
        PayloadError::Policy(PolicyError::TooLarge { .. }) => ErrorKind::ImageTooLarge,
    }
}

pub(crate) fn upstream(e: &UpstreamError) -> ErrorKind {
    match e {
        UpstreamError::InvalidUrl | UpstreamError::Tls(_) => ErrorKind::Internal,
        UpstreamError::Unreachable(_) | UpstreamError::ConnectFailed(_) => {
            ErrorKind::VendorUnreachable
        }
        UpstreamError::CircuitOpen { .. } => ErrorKind::VendorCircuitOpen,
        UpstreamError::Timeout => ErrorKind::VendorTimeout,
        UpstreamError::BadResponse(_) => ErrorKind::VendorBadResponse,
        UpstreamError::Auth(_) => ErrorKind::VendorAuth,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Client mistakes are never 5xx; gateway and vendor faults always are.
    #[test]
    fn client_errors_are_4xx() {
        let client: Vec<GatewayError> = vec![
            AuthError::Missing.into(),
            AuthError::TenantDisabled.into(),
            BodyError::TextNotUtf8.into(),
            BodyError::ReadTimeout.into(),
            PayloadError::from(NormalizeError::InvalidBase64).into(),
            PayloadError::from(ImageError::Unrecognized).into(),
            PayloadError::from(ImageError::Incomplete(livegate_payload::ImageFormat::Jpeg)).into(),
        ];
        for e in client {
            assert!(e.error_kind().status().is_client_error(), "{e:?}");
        }
        let ours: Vec<GatewayError> = vec![
            UpstreamError::Timeout.into(),
            UpstreamError::Auth(401).into(),
            UpstreamError::BadResponse("x").into(),
        ];
        for e in ours {
            assert!(e.error_kind().status().is_server_error(), "{e:?}");
        }
    }
}
