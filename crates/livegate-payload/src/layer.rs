//! The payload layer: reads the client's body, turns whatever image upload
//! it holds into the strict body the vendor wants, or refuses it before a
//! paid vendor call is spent.
//!
//! In order, for each request:
//! 1. the body format, by `Content-Type` ([`BodyFormat`]): 415 before reading;
//! 2. a declared `Content-Length` over the limit: 413 before reading;
//! 3. the body is read, bounded by the limit (a chunked body is cut off as
//!    soon as it passes it) and the read timeout;
//! 4. the `faceImage` is taken out ([`json`](crate::body::json),
//!    [`multipart`](crate::body::multipart) or the raw body), normalized,
//!    decoded once in chunks (hashed, sniffed and structurally checked on
//!    the way, never held whole) and checked against the tenant's
//!    [`ImagePolicy`]; a truncated or corrupt image is refused here, before
//!    protection and the vendor;
//! 5. the image facts go into the request's
//!    [`Exchange`](livegate_core::exchange::Exchange) record;
//! 6. the inner service gets the request with the vendor body in place of
//!    the client's: its method, URI, headers and extensions unchanged (what
//!    reaches the vendor is decided where the vendor request is made, not
//!    here).
//!
//! The forwarded body is the client's own bytes when they already are
//! exactly what the vendor wants (a JSON object whose only member is a
//! canonical `faceImage`), so the common case copies nothing; otherwise it is
//! `{"faceImage":"<canonical base64>"}`, written once into its buffer.
//!
//! Failures are the inner service's error type, made from [`BodyError`] or
//! [`PayloadError`], so one place renders every error of the stack.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use bytes::{Bytes, BytesMut};
//! use http::Request;
//! use livegate_payload::{BodyError, PayloadError, PayloadLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! #[derive(Debug)]
//! enum Refused { Body(BodyError), Payload(PayloadError) }
//! impl From<BodyError> for Refused { fn from(e: BodyError) -> Self { Refused::Body(e) } }
//! impl From<PayloadError> for Refused { fn from(e: PayloadError) -> Self { Refused::Payload(e) } }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let svc = ServiceBuilder::new()
//!     // Every request gets the default policy (no `.policy::<P>()`).
//!     .layer(PayloadLayer::new(10 << 20, Duration::from_secs(30)))
//!     .service(service_fn(|req: Request<Bytes>| async move {
//!         Ok::<_, Refused>(req.into_body()) // the vendor body
//!     }));
//! let req = Request::new(http_body_util::Full::new(Bytes::from(r#"{"faceImage":"bm9wZQ=="}"#)));
//! let err = svc.oneshot(req).await.unwrap_err();
//! assert!(matches!(err, Refused::Payload(_))); // "nope" is not an image
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{Extensions, Request};
use http_body_util::{BodyExt, Limited};
use livegate_core::admission::{is_overloaded, is_too_slow};
use livegate_core::exchange::{Exchange, ImageFacts};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::body::multipart::{self, FacePart};
use crate::body::{BodyError, BodyFormat, is_limit_error, json};
use crate::{
    ImageFormat, ImagePolicy, PayloadError, Prepared, VENDOR_BODY_HEAD, VENDOR_BODY_TAIL,
    prepare_base64_keeping, prepare_bytes, prepare_canonical_keeping, vendor_body,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request's image policy and whether to keep its decoded image, from its
/// extensions.
type PolicyFn = fn(&Extensions) -> Option<(ImagePolicy, bool)>;

/// What the payload layer reads of a request's resolved tenant policy
/// (see [`livegate_core::tenant`]).
pub trait ImagePolicySource: Send + Sync + 'static {
    /// The tenant's image policy.
    fn image_policy(&self) -> &ImagePolicy;
    /// Whether the decoded image is kept for the inner service (in
    /// [`AcceptedImage::decoded`]): a later layer works on its pixels.
    fn keep_image(&self) -> bool;
}

fn read_policy<P: ImagePolicySource>(ext: &Extensions) -> Option<(ImagePolicy, bool)> {
    ext.get::<P>().map(|p| (*p.image_policy(), p.keep_image()))
}

/// The accepted image, in the extensions of the request the inner service
/// gets: its digest and format always, the decoded bytes only when the
/// request's policy asked for them ([`ImagePolicySource::keep_image`]) (a layer that needs them
/// takes them out, so they are freed as soon as it is done).
#[derive(Clone)]
pub struct AcceptedImage {
    pub format: ImageFormat,
    /// SHA-256 of the decoded image bytes.
    pub sha256: [u8; 32],
    pub decoded: Option<Bytes>,
}

impl std::fmt::Debug for AcceptedImage {
    // Never the image: it is biometric data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptedImage")
            .field("format", &self.format)
            .field("decoded_len", &self.decoded.as_ref().map(Bytes::len))
            .finish_non_exhaustive()
    }
}

/// Applies [`Payload`]; see the [module docs](self).
#[derive(Clone)]
pub struct PayloadLayer {
    settings: Arc<Settings>,
}

struct Settings {
    limit: usize,
    read_timeout: Duration,
    /// Bodies larger than this are decoded and hashed on the blocking pool.
    blocking_above: usize,
    policy: Option<PolicyFn>,
}

/// Default for [`PayloadLayer::blocking_above`]: about a millisecond of
/// decoding and hashing on this class of machine.
pub const BLOCKING_ABOVE: usize = 512 * 1024;

impl PayloadLayer {
    /// Bodies up to `limit` bytes, received within `read_timeout`; every
    /// request gets the default [`ImagePolicy`] (and its decoded image is not
    /// kept) until [`Self::policy`].
    pub fn new(limit: usize, read_timeout: Duration) -> Self {
        Self {
            settings: Arc::new(Settings {
                limit,
                read_timeout,
                blocking_above: BLOCKING_ABOVE,
                policy: None,
            }),
        }
    }

    /// Bodies larger than `bytes` have their image decoded, hashed and
    /// checked on tokio's blocking pool, so a burst of large uploads does
    /// not stall the async workers (probes, small requests). The pool's
    /// queue is bounded by admission control, which caps requests in flight.
    pub fn blocking_above(self, bytes: usize) -> Self {
        self.with(|s| s.blocking_above = bytes)
    }

    /// A request's image policy, and whether its decoded image is kept, are
    /// read from its `P` extension (the tenant's resolved policy); a request
    /// without one gets the defaults.
    pub fn policy<P: ImagePolicySource>(self) -> Self {
        self.with(|s| s.policy = Some(read_policy::<P>))
    }

    fn with(self, change: impl FnOnce(&mut Settings)) -> Self {
        let old = &*self.settings;
        let mut new = Settings {
            limit: old.limit,
            read_timeout: old.read_timeout,
            blocking_above: old.blocking_above,
            policy: old.policy,
        };
        change(&mut new);
        Self {
            settings: Arc::new(new),
        }
    }
}

impl<S> Layer<S> for PayloadLayer {
    type Service = Payload<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Payload {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// See the [module docs](self).
#[derive(Clone)]
pub struct Payload<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S, B, E> Service<Request<B>> for Payload<S>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    S: Service<Request<Bytes>, Error = E> + Clone + Send + 'static,
    S::Future: Send,
    E: From<BodyError> + From<PayloadError> + Send + 'static,
{
    type Response = S::Response;
    type Error = E;
    type Future = ResponseFuture<S::Response, E>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let limit = self.settings.limit;
        let format = match BodyFormat::of(req.headers()) {
            Ok(f) => f,
            Err(e) => return ResponseFuture::reject(e.into()),
        };
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return ResponseFuture::reject(BodyError::TooLarge.into());
        }
        let (policy, keep) = self
            .settings
            .policy
            .and_then(|f| f(req.extensions()))
            .unwrap_or_default();
        let read_timeout = self.settings.read_timeout;
        let blocking_above = self.settings.blocking_above;
        // The clone is not ready yet; keep the one that is (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        ResponseFuture::run(async move {
            let body = Limited::new(body, limit);
            let reading = Reading {
                read_timeout,
                declared: declared.and_then(|n| usize::try_from(n).ok()),
                blocking_above,
                policy,
                keep,
            };
            // A child of the request's span, for traces only (target
            // `livegate::trace`, never formatted into logs): reading the body,
            // checking and normalizing the image.
            let span = tracing::info_span!(
                target: "livegate::trace",
                "read_and_normalize",
                otel.kind = "internal"
            );
            let (vendor, facts, decoded) = match read(format, body, reading).instrument(span).await
            {
                Ok(read) => read,
                Err(ReadError::Body(e)) => return Err(e.into()),
                Err(ReadError::Payload(e)) => return Err(e.into()),
            };
            let accepted = AcceptedImage {
                format: decoded.0,
                sha256: facts.sha256,
                decoded: decoded.1,
            };
            if let Some(x) = parts.extensions.get::<Exchange>() {
                x.set_image(facts);
            }
            let mut out = Request::from_parts(parts, vendor);
            out.extensions_mut().insert(accepted);
            inner.call(out).await
        })
    }
}

/// How to read one request's body.
struct Reading {
    read_timeout: Duration,
    /// The declared `Content-Length`, to size the buffer once.
    declared: Option<usize>,
    blocking_above: usize,
    policy: ImagePolicy,
    /// Keep the decoded image for the inner service.
    keep: bool,
}

/// The image's format and, when kept, its decoded bytes.
type Kept = (ImageFormat, Option<Bytes>);

/// Reads the body and prepares the image: the vendor body and the facts.
async fn read<B>(
    format: BodyFormat,
    body: Limited<B>,
    r: Reading,
) -> Result<(Bytes, ImageFacts, Kept), ReadError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let policy = r.policy;
    let keep = r.keep;
    match format {
        BodyFormat::Json => {
            let bytes = read_all(body, r.read_timeout, r.declared).await?;
            offload(bytes.len() > r.blocking_above, move || {
                json_image(bytes, &policy, keep)
            })
            .await
        }
        BodyFormat::Multipart(boundary) => {
            let part = tokio::time::timeout(
                r.read_timeout,
                multipart::face_part(body.into_data_stream(), boundary),
            )
            .await
            .map_err(|_| BodyError::ReadTimeout)??;
            let len = match &part {
                FacePart::File(b) => b.len(),
                FacePart::Text(t) => t.len(),
            };
            offload(len > r.blocking_above, move || {
                part_image(part, &policy, keep)
            })
            .await
        }
        BodyFormat::RawImage => {
            let bytes = read_all(body, r.read_timeout, r.declared).await?;
            if bytes.is_empty() {
                return Err(BodyError::FaceImageRequired.into());
            }
            offload(bytes.len() > r.blocking_above, move || {
                let prepared = prepare_bytes(&bytes, &policy)?;
                let facts = facts(&prepared);
                let kept = (prepared.info.format, keep.then_some(bytes));
                Ok((
                    Bytes::from(prepared.vendor_body.unwrap_or_default()),
                    facts,
                    kept,
                ))
            })
            .await
        }
    }
}

/// Runs the CPU-bound part of a request on the blocking pool when `big`.
/// A panic there is carried back to this task, where the exchange layer
/// records it.
async fn offload<T, F>(big: bool, work: F) -> Result<T, ReadError>
where
    F: FnOnce() -> Result<T, ReadError> + Send + 'static,
    T: Send + 'static,
{
    if !big {
        return work();
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled: only when the runtime shuts down.
            Err(_) => Err(BodyError::ReadFailed.into()),
        },
    }
}

fn json_image(
    bytes: Bytes,
    policy: &ImagePolicy,
    keep: bool,
) -> Result<(Bytes, ImageFacts, Kept), ReadError> {
    // The vendor's own shape with canonical base64, the common case, needs no JSON
    // parser: canonical base64 holds no quote, backslash or control byte, so such a
    // body is exactly `{"faceImage": <that string>}`, and is forwarded as it is.
    if let Some(image) = bytes
        .strip_prefix(VENDOR_BODY_HEAD)
        .and_then(|rest| rest.strip_suffix(VENDOR_BODY_TAIL))
    {
        if let Some(prepared) = prepare_canonical_keeping(image, policy, keep) {
            let prepared = prepared?;
            let facts = facts(&prepared);
            return Ok((bytes, facts, (prepared.info.format, prepared.decoded)));
        }
    }
    let face = json::parse(&bytes)?;
    let prepared = prepare_base64_keeping(&face.image, policy, keep)?;
    let facts = facts(&prepared);
    let kept = (prepared.info.format, prepared.decoded);
    let vendor = match prepared.vendor_body {
        Some(b) => Bytes::from(b),
        // Zero-copy when the client's body already is exactly the vendor's.
        None if face.forwardable => bytes.clone(),
        None => Bytes::from(vendor_body(&face.image)),
    };
    Ok((vendor, facts, kept))
}

fn part_image(
    part: FacePart,
    policy: &ImagePolicy,
    keep: bool,
) -> Result<(Bytes, ImageFacts, Kept), ReadError> {
    let (prepared, text, file) = match part {
        FacePart::File(bytes) => (prepare_bytes(&bytes, policy)?, None, Some(bytes)),
        FacePart::Text(text) => (
            prepare_base64_keeping(&text, policy, keep)?,
            Some(text),
            None,
        ),
    };
    let facts = facts(&prepared);
    let kept = (
        prepared.info.format,
        prepared.decoded.or(file.filter(|_| keep)),
    );
    let vendor = match (prepared.vendor_body, text) {
        (Some(b), _) => Bytes::from(b),
        (None, Some(text)) => Bytes::from(vendor_body(&text)),
        (None, None) => Bytes::new(),
    };
    Ok((vendor, facts, kept))
}

/// The exchange record's view of a prepared image. `rewritten`: the
/// gateway wrote the base64 (the client's was not canonical, or it sent raw
/// bytes).
fn facts(p: &Prepared) -> ImageFacts {
    ImageFacts {
        format: p.info.format.as_str(),
        width: p.info.width,
        height: p.info.height,
        size: p.size,
        sha256: p.sha256,
        rewritten: p.vendor_body.is_some(),
    }
}

/// Either error of [`read`], before it becomes the stack's error type.
enum ReadError {
    Body(BodyError),
    Payload(PayloadError),
}

impl From<BodyError> for ReadError {
    fn from(e: BodyError) -> Self {
        ReadError::Body(e)
    }
}

impl From<PayloadError> for ReadError {
    fn from(e: PayloadError) -> Self {
        ReadError::Payload(e)
    }
}

/// Reads the whole (limited) body, within the read timeout, into one
/// buffer sized once from the declared length; each frame is copied in and
/// dropped, so a request never holds its body twice. A body that arrives as
/// one frame is kept as it is.
async fn read_all<B>(
    body: Limited<B>,
    read_timeout: Duration,
    declared: Option<usize>,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let collect = async {
        let mut body = std::pin::pin!(body);
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            match first.take() {
                None if buf.is_empty() => first = Some(data),
                None => buf.extend_from_slice(&data),
                Some(head) => {
                    buf.reserve(declared.unwrap_or(0).max(head.len() + data.len()));
                    buf.extend_from_slice(&head);
                    buf.extend_from_slice(&data);
                }
            }
        }
        Ok::<_, BoxError>(first.unwrap_or_else(|| buf.freeze()))
    };
    match tokio::time::timeout(read_timeout, collect).await {
        Err(_) => Err(BodyError::ReadTimeout),
        Ok(Err(e)) if is_limit_error(e.as_ref()) => Err(BodyError::TooLarge),
        Ok(Err(e)) if is_overloaded(e.as_ref()) => Err(BodyError::Overloaded),
        Ok(Err(e)) if is_too_slow(e.as_ref()) => Err(BodyError::TooSlow),
        Ok(Err(_)) => Err(BodyError::ReadFailed),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Payload`]: an immediate refusal (no allocation),
    /// or the body read and the inner call.
    pub struct ResponseFuture<R, E> {
        #[pin]
        state: State<R, E>,
    }
}

type Running<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<R, E> {
        Reject { error: Option<E> },
        Run { fut: Running<R, E> },
    }
}

impl<R, E> ResponseFuture<R, E> {
    fn reject(error: E) -> Self {
        Self {
            state: State::Reject { error: Some(error) },
        }
    }

    fn run<F>(fut: F) -> Self
    where
        F: Future<Output = Result<R, E>> + Send + 'static,
    {
        Self {
            state: State::Run { fut: Box::pin(fut) },
        }
    }
}

impl<R, E> Future for ResponseFuture<R, E> {
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Reject { error } => match error.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => panic!("ResponseFuture polled after completion"),
            },
            StateProj::Run { fut } => fut.as_mut().poll(cx),
        }
    }
}
