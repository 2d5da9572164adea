//! Lingering close for HTTP/1.1: an answer sent before the request body
//! was read (401, 403, 404, 413, 415, 429, 503, …) is followed by reading
//! and discarding the rest of the body, for a bounded time and size.
//!
//! Without it, hyper closes the connection with the body unread, the kernel
//! answers the client's further data with a reset, and a client that writes
//! its whole body before reading (Python's `http.client`, `requests`) sees a
//! broken pipe or a reset instead of the answer (and its `Retry-After`).
//! nginx (`lingering_close`) and Envoy do the same.
//!
//! How: the request body handed to the stack is watched. When the stack
//! drops it unfinished, the underlying hyper body is kept instead of
//! dropped; once the response body has been written (hyper drops it), a
//! task reads the rest of the request body and discards it — at most
//! `timeout` and `bytes`. If the body ends within those bounds, hyper sees a
//! fully read request and keeps the connection alive for the next one;
//! otherwise the body is dropped and hyper closes the connection as before.
//! The drain starts only after the answer is written, so hyper never sends
//! a `100 Continue` for a request already answered: a client waiting for it
//! (curl) sends no body and the connection simply closes.
//!
//! HTTP/2 does not need it: an early answer ends the stream with
//! `RST_STREAM(NO_ERROR)`, which clients expect.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};

/// The bounds of one lingering close.
#[derive(Debug, Clone, Copy)]
pub struct Linger {
    pub timeout: Duration,
    pub bytes: u64,
}

/// Wraps the stack of an HTTP/1.1 connection; see the module docs.
#[derive(Clone)]
pub struct Lingering<S> {
    inner: S,
    linger: Linger,
}

impl<S> Lingering<S> {
    pub fn new(inner: S, linger: Linger) -> Self {
        Self { inner, linger }
    }
}

/// Shared by the request's body and its answer's body.
struct Slot {
    linger: Linger,
    /// The request body, dropped unfinished by the stack.
    left: Option<Incoming>,
    /// The answer has been written (or abandoned).
    answered: bool,
}

type Shared = Arc<Mutex<Slot>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Slot> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S, RB> tower::Service<Request<Incoming>> for Lingering<S>
where
    S: tower::Service<Request<Watched>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<Answer<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let slot = Arc::new(Mutex::new(Slot {
            linger: self.linger,
            left: None,
            answered: false,
        }));
        let watched = slot.clone();
        let fut = self.inner.call(req.map(|body| Watched {
            body: Some(body),
            slot: watched,
        }));
        Box::pin(async move {
            let res = fut.await?;
            Ok(res.map(|body| Answer { body, slot }))
        })
    }
}

pin_project_lite::pin_project! {
    /// The request body as the stack sees it.
    pub struct Watched {
        body: Option<Incoming>,
        slot: Shared,
    }

    impl PinnedDrop for Watched {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let Some(body) = this.body.take() else {
                return;
            };
            if body.is_end_stream() {
                return;
            }
            let mut slot = lock(this.slot);
            if slot.answered {
                spawn_drain(body, slot.linger);
            } else {
                slot.left = Some(body);
            }
        }
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let out = Pin::new(body).poll_frame(cx);
        // Ended or broken: nothing is left to drain.
        if matches!(out, Poll::Ready(None | Some(Err(_)))) {
            *this.body = None;
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

pin_project_lite::pin_project! {
    /// The answer's body; when hyper is done with it, a request body the
    /// stack left unread is drained.
    pub struct Answer<B> {
        #[pin]
        body: B,
        slot: Shared,
    }

    impl<B> PinnedDrop for Answer<B> {
        fn drop(this: Pin<&mut Self>) {
            let mut slot = lock(this.project().slot);
            slot.answered = true;
            if let Some(body) = slot.left.take() {
                spawn_drain(body, slot.linger);
            }
        }
    }
}

impl<B: Body> Body for Answer<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

fn spawn_drain(body: Incoming, linger: Linger) {
    // Lingering turned off: the body is dropped and hyper closes.
    if linger.timeout.is_zero() {
        return;
    }
    // No runtime (it is shutting down): the body is dropped and hyper closes.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(drain(body, linger));
    }
}

/// Reads and discards `body` within the bounds; dropping it unfinished
/// makes hyper close the connection, finishing it lets hyper keep it.
async fn drain(mut body: Incoming, linger: Linger) {
    let mut read = 0u64;
    let all = tokio::time::timeout(linger.timeout, async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                read = read.saturating_add(data.len() as u64);
                if read > linger.bytes {
                    return false;
                }
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    tracing::debug!(drained_bytes = read, complete = all, "lingering close");
}
