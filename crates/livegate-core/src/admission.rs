//! Admission control: a cap on concurrent liveness requests and on the
//! body bytes they hold, so a burst of large uploads cannot exhaust memory.
//!
//! A request is admitted when a request slot is free and its reservation
//! fits the in-flight body budget; otherwise it fails at once with
//! [`Overloaded`] — answered 503 with `Retry-After` — **before any of its
//! body is read**. The reservation is [`RESERVE_FACTOR`] times the declared
//! `Content-Length` (the body, and the vendor's copy of it when it has to be
//! rewritten or encoded); a body without a declared length (chunked) is
//! charged the same way as its bytes arrive, and fails with [`Overloaded`]
//! as its body error as soon as it no longer fits. Everything is released
//! when the request's response future completes or is dropped.
//!
//! Every refusal is counted ([`Admission::refused`]) and, the layer sitting
//! inside the exchange layer, gets its exchange record like any other error.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use livegate_core::admission::{Admission, AdmissionLayer, Overloaded};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let admission = Admission::new(16, 256 << 20);
//! let svc = ServiceBuilder::new()
//!     .layer(AdmissionLayer::new(admission.clone()))
//!     .service(service_fn(|_req: Request<_>| async {
//!         Ok::<_, Overloaded>(http::Response::new("admitted"))
//!     }));
//! let req = Request::builder()
//!     .header("content-length", (300u64 << 20).to_string())
//!     .body(http_body_util::Empty::<Bytes>::new())
//!     .unwrap();
//! assert!(svc.oneshot(req).await.is_err()); // 300 MiB does not fit in 256 MiB
//! assert_eq!(admission.refused(), 1);
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Buf;
use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

/// Bytes reserved per byte of declared body: the body itself, and the
/// vendor's copy when it must be rewritten (a raw or multipart upload grows
/// by a third when encoded).
pub const RESERVE_FACTOR: usize = 5;
const RESERVE_DIVISOR: usize = 2;

/// When a refused client should try again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The request was not admitted (or its streamed body stopped fitting).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("gateway is at its limit of in-flight liveness requests or body bytes")]
pub struct Overloaded {
    pub retry_after: Duration,
}

/// The shared counters; one per gateway.
#[derive(Debug)]
pub struct Admission {
    max_requests: usize,
    budget: usize,
    requests: AtomicUsize,
    bytes: AtomicUsize,
    refused: AtomicU64,
}

impl Admission {
    pub fn new(max_requests: usize, budget_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            max_requests,
            budget: budget_bytes,
            requests: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Requests refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Requests and reserved bytes in flight now.
    pub fn in_flight(&self) -> (usize, usize) {
        (
            self.requests.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    fn try_take_request(&self) -> bool {
        self.requests
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_requests).then_some(n + 1)
            })
            .is_ok()
    }

    fn try_reserve(&self, bytes: usize) -> bool {
        bytes == 0
            || self
                .bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    n.checked_add(bytes).filter(|&t| t <= self.budget)
                })
                .is_ok()
    }

    fn refuse(&self) -> Overloaded {
        self.refused.fetch_add(1, Ordering::Relaxed);
        Overloaded {
            retry_after: RETRY_AFTER,
        }
    }
}

fn reservation(body_bytes: usize) -> usize {
    body_bytes.saturating_mul(RESERVE_FACTOR) / RESERVE_DIVISOR
}

/// What one admitted request holds; given back on drop.
#[derive(Debug)]
struct Ticket {
    admission: Arc<Admission>,
    /// Bytes reserved so far (grows for a streamed body).
    reserved: Arc<AtomicUsize>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let bytes = self.reserved.load(Ordering::Acquire);
        self.admission.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.admission.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Applies [`AdmissionService`]; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct AdmissionLayer {
    admission: Arc<Admission>,
}

impl AdmissionLayer {
    pub fn new(admission: Arc<Admission>) -> Self {
        Self { admission }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService {
            inner,
            admission: self.admission.clone(),
        }
    }
}

/// See the [module docs](self).
#[derive(Clone, Debug)]
pub struct AdmissionService<S> {
    inner: S,
    admission: Arc<Admission>,
}

impl<S, B, RB> Service<Request<B>> for AdmissionService<S>
where
    S: Service<Request<CountedBody<B>>, Response = Response<RB>>,
    S::Error: From<Overloaded>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let a = &self.admission;
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if !a.try_take_request() {
            return ResponseFuture::refused(a.refuse().into());
        }
        let reserve = declared.map_or(0, reservation);
        if !a.try_reserve(reserve) {
            a.requests.fetch_sub(1, Ordering::AcqRel);
            return ResponseFuture::refused(a.refuse().into());
        }
        let ticket = Ticket {
            admission: a.clone(),
            reserved: Arc::new(AtomicUsize::new(reserve)),
        };
        let counted = declared.is_none().then(|| ticket.reserved.clone());
        let admission = a.clone();
        let req = req.map(|body| CountedBody {
            body,
            counted: counted.map(|reserved| (admission, reserved)),
        });
        ResponseFuture {
            state: State::Admitted {
                fut: self.inner.call(req),
                ticket: Some(ticket),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`AdmissionService`]; holds the reservation.
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        Refused { error: Option<E> },
        Admitted { #[pin] fut: F, ticket: Option<Ticket> },
    }
}

impl<F, E> ResponseFuture<F, E> {
    fn refused(error: E) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
        }
    }
}

impl<F, R, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<R, E>>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
            StateProj::Admitted { fut, ticket } => {
                let out = ready!(fut.poll(cx));
                // The request's buffers are gone with its future's output.
                ticket.take();
                Poll::Ready(out)
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The request body; a body without a declared length is charged to
    /// the budget as it arrives and fails with [`Overloaded`] when it no
    /// longer fits.
    pub struct CountedBody<B> {
        #[pin]
        body: B,
        counted: Option<(Arc<Admission>, Arc<AtomicUsize>)>,
    }
}

impl<B> Body for CountedBody<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = match ready!(this.body.poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        if let (Some((admission, reserved)), Some(data)) = (this.counted, frame.data_ref()) {
            let more = reservation(data.remaining());
            if !admission.try_reserve(more) {
                return Poll::Ready(Some(Err(Box::new(admission.refuse()))));
            }
            reserved.fetch_add(more, Ordering::AcqRel);
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// True when a body read failed because the admission budget ran out.
pub fn is_overloaded(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<Overloaded>() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, StreamBody};
    use tower::{ServiceExt, service_fn};

    use super::*;

    fn req(len: Option<usize>) -> Request<Full<Bytes>> {
        let mut b = Request::builder();
        if let Some(n) = len {
            b = b.header(CONTENT_LENGTH, n.to_string());
        }
        b.body(Full::new(Bytes::from(vec![b'a'; len.unwrap_or(10)])))
            .unwrap()
    }

    #[tokio::test]
    async fn slots_and_budget_are_taken_and_given_back() {
        let a = Admission::new(2, 1000);
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let svc = AdmissionLayer::new(a.clone()).layer(service_fn(move |_req| {
            let mut rx = release_rx.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
                Ok::<_, Overloaded>(Response::new(()))
            }
        }));
        // 100 declared bytes reserve 250.
        let one = tokio::spawn(svc.clone().oneshot(req(Some(100))));
        let two = tokio::spawn(svc.clone().oneshot(req(Some(100))));
        while a.in_flight().0 < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(a.in_flight(), (2, 500));
        // No third slot.
        assert!(svc.clone().oneshot(req(Some(1))).await.is_err());
        release_tx.send(true).unwrap();
        one.await.unwrap().unwrap();
        two.await.unwrap().unwrap();
        assert_eq!(a.in_flight(), (0, 0));
        // Over the budget by declaration alone.
        assert!(svc.clone().oneshot(req(Some(401))).await.is_err());
        assert_eq!(a.in_flight(), (0, 0));
        assert_eq!(a.refused(), 2);
    }

    #[tokio::test]
    async fn a_streamed_body_is_charged_as_it_arrives() {
        let a = Admission::new(4, 100);
        let svc = AdmissionLayer::new(a.clone()).layer(service_fn(
            |req: Request<CountedBody<_>>| async move {
                let read = req.into_body().collect().await;
                Ok::<_, Overloaded>(Response::new(read.map(|c| c.to_bytes().len())))
            },
        ));
        let chunks = |n: usize| {
            let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..n)
                .map(|_| Ok(Frame::data(Bytes::from_static(&[b'x'; 10]))))
                .collect();
            Request::new(StreamBody::new(futures_util::stream::iter(frames)))
        };
        // 4 chunks of 10 bytes reserve 100: fits.
        let res = svc.clone().oneshot(chunks(4)).await.unwrap();
        assert_eq!(*res.body().as_ref().unwrap(), 40);
        // 5 do not: the body read fails with Overloaded.
        let res = svc.clone().oneshot(chunks(5)).await.unwrap();
        let err = res.into_body().unwrap_err();
        assert!(is_overloaded(err.as_ref()), "{err}");
        assert_eq!(a.in_flight(), (0, 0));
    }
}
