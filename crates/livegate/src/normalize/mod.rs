//! Payload normalization: turns whatever image upload the client sent into
//! the strict body the vendor wants, or refuses it before a paid vendor
//! call is spent.
//!
//! Accepted bodies (by `Content-Type`; none at all is taken as JSON):
//! - `application/json` (or `*/*+json`): `{"faceImage": "<base64>"}`, the
//!   vendor's own shape; see [`json`] for the parsing rules;
//! - `multipart/form-data` with a `faceImage` part; see [`multipart`];
//! - a raw `image/jpeg`, `image/png`, `image/webp`, `image/gif` or
//!   `application/octet-stream` body.
//!
//! The base64 is normalized and the image checked by
//! [`livegate_payload::prepare_base64`] against the tenant's
//! [`ImagePolicy`]. The forwarded body is the client's own bytes when they
//! already are exactly what the vendor wants (a JSON object whose only
//! member is a canonical `faceImage`), so the common case copies nothing;
//! otherwise it is `{"faceImage":"<canonical base64>"}`. Other members of
//! the client's object are not forwarded: the vendor API defines only
//! `faceImage`.

mod json;
mod multipart;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use livegate_core::{ErrorKind, error_response, request_id};
use livegate_payload::{
    ImageError, ImageFormat, ImagePolicy, NormalizeError, PayloadError, PolicyError, Prepared,
};
use tower::{Layer, Service};

use crate::BoxFuture;
use crate::body_limit::is_limit_error;

/// Image policies: the deployment's default and per-tenant overrides.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub default: ImagePolicy,
    pub tenants: HashMap<String, ImagePolicy>,
}

impl Policies {
    pub fn for_tenant(&self, tenant: Option<&str>) -> &ImagePolicy {
        tenant
            .and_then(|t| self.tenants.get(t))
            .unwrap_or(&self.default)
    }
}

/// What the gateway learned about the image, left in the request
/// extensions for audit and metrics. Never the image itself.
#[derive(Debug, Clone, Copy)]
pub struct ImageMeta {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    /// Decoded image size in bytes.
    pub size: usize,
    /// Whether the client's base64 had to be rewritten.
    pub rewritten: bool,
}

/// Applies [`Normalize`].
#[derive(Clone)]
pub struct NormalizeLayer {
    policies: Arc<Policies>,
    read_timeout: Duration,
}

impl NormalizeLayer {
    pub fn new(policies: Arc<Policies>, read_timeout: Duration) -> Self {
        Self {
            policies,
            read_timeout,
        }
    }
}

impl<S> Layer<S> for NormalizeLayer {
    type Service = Normalize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Normalize {
            inner,
            policies: self.policies.clone(),
            read_timeout: self.read_timeout,
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct Normalize<S> {
    inner: S,
    policies: Arc<Policies>,
    read_timeout: Duration,
}

impl<S> Service<Request<Body>> for Normalize<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone is not ready yet; keep the one that is (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policies = self.policies.clone();
        let read_timeout = self.read_timeout;
        Box::pin(async move {
            let rid = request_id(req.headers()).to_owned();
            match rewrite(req, &policies, read_timeout).await {
                Ok(req) => inner.call(req).await,
                Err(kind) => {
                    tracing::info!(reason = kind.as_str(), "payload refused");
                    Ok(error_response(kind, &rid))
                }
            }
        })
    }
}

/// The body formats the gateway understands.
#[derive(Debug, PartialEq, Eq)]
enum BodyFormat {
    Json,
    Multipart(String),
    RawImage,
}

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ErrorKind> {
    let Some(ct) = headers.get(CONTENT_TYPE) else {
        return Ok(BodyFormat::Json);
    };
    let ct = ct.to_str().map_err(|_| ErrorKind::UnsupportedMediaType)?;
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
            .map_err(|_| ErrorKind::MalformedMultipart),
        "image/jpeg"
        | "image/jpg"
        | "image/png"
        | "image/webp"
        | "image/gif"
        | "application/octet-stream" => Ok(BodyFormat::RawImage),
        _ => Err(ErrorKind::UnsupportedMediaType),
    }
}

async fn rewrite(
    req: Request<Body>,
    policies: &Policies,
    read_timeout: Duration,
) -> Result<Request<Body>, ErrorKind> {
    let format = body_format(req.headers())?;
    let (mut parts, body) = req.into_parts();
    let tenant = parts
        .extensions
        .get::<livegate_auth::authn::Principal>()
        .map(|p| p.tenant.id.as_str());
    let policy = policies.for_tenant(tenant);

    let (prepared, forward) = match format {
        BodyFormat::Json => {
            let bytes = read_body(body, read_timeout).await?;
            let face = json::parse(&bytes)?;
            let prepared =
                livegate_payload::prepare_base64(&face.image, policy).map_err(payload_error)?;
            // Zero-copy when the client's body already is exactly the vendor's.
            let forward = if face.forwardable && prepared.canonical.is_none() {
                bytes.clone()
            } else {
                vendor_body(prepared.canonical.as_deref().unwrap_or(&face.image))
            };
            (prepared, forward)
        }
        BodyFormat::Multipart(boundary) => {
            let part = tokio::time::timeout(read_timeout, multipart::face_image(body, boundary))
                .await
                .map_err(|_| ErrorKind::BodyReadTimeout)??;
            let prepared = match part {
                multipart::FacePart::File(bytes) => {
                    livegate_payload::prepare_bytes(bytes.into(), policy)
                }
                multipart::FacePart::Text(text) => livegate_payload::prepare_base64(&text, policy),
            }
            .map_err(payload_error)?;
            let forward = vendor_body(canonical_of(&prepared));
            (prepared, forward)
        }
        BodyFormat::RawImage => {
            let bytes = read_body(body, read_timeout).await?;
            if bytes.is_empty() {
                return Err(ErrorKind::FaceImageRequired);
            }
            let prepared =
                livegate_payload::prepare_bytes(bytes.into(), policy).map_err(payload_error)?;
            let forward = vendor_body(canonical_of(&prepared));
            (prepared, forward)
        }
    };

    parts.extensions.insert(ImageMeta {
        format: prepared.info.format,
        width: prepared.info.width,
        height: prepared.info.height,
        size: prepared.bytes.len(),
        rewritten: prepared.canonical.is_some(),
    });
    let h = &mut parts.headers;
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.remove(TRANSFER_ENCODING);
    h.insert(CONTENT_LENGTH, HeaderValue::from(forward.len()));
    Ok(Request::from_parts(parts, Body::from(forward)))
}

fn canonical_of(p: &Prepared) -> &str {
    // prepare_bytes always encodes; an empty string cannot pass the image checks.
    p.canonical.as_deref().unwrap_or_default()
}

/// Reads the whole (limited) body, within the read timeout.
async fn read_body(body: Body, read_timeout: Duration) -> Result<Bytes, ErrorKind> {
    match tokio::time::timeout(read_timeout, body.collect()).await {
        Err(_) => Err(ErrorKind::BodyReadTimeout),
        Ok(Err(e)) if is_limit_error(&e) => Err(ErrorKind::BodyTooLarge),
        Ok(Err(_)) => Err(ErrorKind::BodyReadFailed),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// `{"faceImage":"<b64>"}`; base64 needs no JSON escaping.
fn vendor_body(b64: &str) -> Bytes {
    const HEAD: &[u8] = b"{\"faceImage\":\"";
    const TAIL: &[u8] = b"\"}";
    let mut out = Vec::with_capacity(HEAD.len() + b64.len() + TAIL.len());
    out.extend_from_slice(HEAD);
    out.extend_from_slice(b64.as_bytes());
    out.extend_from_slice(TAIL);
    Bytes::from(out)
}

/// The client-facing error for a payload that cannot be forwarded.
pub fn payload_error(e: PayloadError) -> ErrorKind {
    match e {
        PayloadError::Normalize(NormalizeError::Empty) => ErrorKind::FaceImageRequired,
        PayloadError::Normalize(NormalizeError::InvalidBase64) => ErrorKind::InvalidBase64,
        PayloadError::Image(ImageError::Unrecognized) => ErrorKind::NotAnImage,
        PayloadError::Image(ImageError::Truncated(_) | ImageError::Corrupt(_)) => {
            ErrorKind::ImageCorrupt
        }
        PayloadError::Policy(PolicyError::FormatNotAllowed(_)) => ErrorKind::ImageFormatNotAllowed,
        PayloadError::Policy(PolicyError::TooSmall { .. }) => ErrorKind::ImageTooSmall,
        PayloadError::Policy(PolicyError::TooLarge { .. }) => ErrorKind::ImageTooLarge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn content_types() {
        assert_eq!(body_format(&HeaderMap::new()), Ok(BodyFormat::Json));
        assert_eq!(
            body_format(&ct("application/json; charset=utf-8")),
            Ok(BodyFormat::Json)
        );
        assert_eq!(body_format(&ct("Application/JSON")), Ok(BodyFormat::Json));
        assert_eq!(
            body_format(&ct("application/vnd.x+json")),
            Ok(BodyFormat::Json)
        );
        assert_eq!(body_format(&ct("image/png")), Ok(BodyFormat::RawImage));
        assert_eq!(
            body_format(&ct("multipart/form-data; boundary=abc")),
            Ok(BodyFormat::Multipart("abc".into()))
        );
        assert_eq!(
            body_format(&ct("multipart/form-data")),
            Err(ErrorKind::MalformedMultipart)
        );
        assert_eq!(
            body_format(&ct("text/plain")),
            Err(ErrorKind::UnsupportedMediaType)
        );
        assert_eq!(
            body_format(&ct("application/x-www-form-urlencoded")),
            Err(ErrorKind::UnsupportedMediaType)
        );
    }

    #[test]
    fn vendor_body_is_the_vendor_shape() {
        let b = vendor_body("QUJD");
        assert_eq!(&b[..], br#"{"faceImage":"QUJD"}"#);
    }
}
