//! Reading the client's body: which format it is in (by `Content-Type`), and
//! the `faceImage` out of it.
//!
//! Accepted bodies (none at all is taken as JSON):
//! - `application/json` (or `application/*+json`): `{"faceImage": "<base64>"}`,
//!   the vendor's own shape; see [`json`] for the parsing rules;
//! - `multipart/form-data` with a `faceImage` part; see [`multipart`];
//! - a raw `image/jpeg`, `image/png`, `image/webp`, `image/gif` or
//!   `application/octet-stream` body.

pub mod json;
pub mod multipart;

use http::HeaderMap;
use http::header::CONTENT_TYPE;

/// Why a body could not be read or has no usable `faceImage`.
///
/// Carries no part of the body: these end up in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("faceImage is missing or empty")]
    FaceImageRequired,
    #[error("body is not valid json")]
    MalformedJson,
    #[error("body is not a json object")]
    NotAnObject,
    #[error("faceImage is not a string")]
    FaceImageNotString,
    #[error("faceImage appears more than once")]
    DuplicateFaceImage,
    #[error("multipart body is malformed")]
    MalformedMultipart,
    #[error("faceImage text field is not utf-8")]
    TextNotUtf8,
    #[error("body is larger than the limit")]
    TooLarge,
    #[error("body could not be read")]
    ReadFailed,
    #[error("body was not received in time")]
    ReadTimeout,
    /// A body without a declared length stopped fitting the gateway's
    /// in-flight body budget while it arrived.
    #[error("body does not fit the gateway's in-flight budget")]
    Overloaded,
    /// The body arrived slower than the minimum upload rate.
    #[error("body arrived too slowly")]
    TooSlow,
}

/// The body formats the gateway understands.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    /// With its boundary.
    Multipart(String),
    RawImage,
}

impl BodyFormat {
    /// The format named by the request's `Content-Type`.
    pub fn of(headers: &HeaderMap) -> Result<BodyFormat, BodyError> {
        let Some(ct) = headers.get(CONTENT_TYPE) else {
            return Ok(BodyFormat::Json);
        };
        let ct = ct.to_str().map_err(|_| BodyError::UnsupportedMediaType)?;
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Ok(BodyFormat::Json),
            e if e.starts_with("application/") && e.ends_with("+json") => Ok(BodyFormat::Json),
            "multipart/form-data" => multer::parse_boundary(ct)
                .map(BodyFormat::Multipart)
                .map_err(|_| BodyError::MalformedMultipart),
            "image/jpeg"
            | "image/jpg"
            | "image/png"
            | "image/webp"
            | "image/gif"
            | "application/octet-stream" => Ok(BodyFormat::RawImage),
            _ => Err(BodyError::UnsupportedMediaType),
        }
    }
}

/// True when a body read failed because the limit was passed
/// ([`http_body_util::Limited`]), anywhere in the error's source chain.
pub fn is_limit_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn ct(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn content_types() {
        let of = BodyFormat::of;
        assert_eq!(of(&HeaderMap::new()), Ok(BodyFormat::Json));
        assert_eq!(
            of(&ct("application/json; charset=utf-8")),
            Ok(BodyFormat::Json)
        );
        assert_eq!(of(&ct("Application/JSON")), Ok(BodyFormat::Json));
        assert_eq!(of(&ct("application/vnd.x+json")), Ok(BodyFormat::Json));
        assert_eq!(of(&ct("image/png")), Ok(BodyFormat::RawImage));
        assert_eq!(
            of(&ct("multipart/form-data; boundary=abc")),
            Ok(BodyFormat::Multipart("abc".into()))
        );
        assert_eq!(
            of(&ct("multipart/form-data")),
            Err(BodyError::MalformedMultipart)
        );
        assert_eq!(of(&ct("text/plain")), Err(BodyError::UnsupportedMediaType));
        assert_eq!(
            of(&ct("application/x-www-form-urlencoded")),
            Err(BodyError::UnsupportedMediaType)
        );
    }

    #[test]
    fn messages_start_lowercase() {
        for e in [BodyError::MalformedJson, BodyError::TextNotUtf8] {
            assert!(e.to_string().starts_with(char::is_lowercase), "{e}");
        }
    }
}
