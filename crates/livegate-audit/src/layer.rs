//! The audit layer: a place in the audit trail for every request, taken
//! at entry.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Request;
use livegate_core::exchange::Exchange;
use livegate_core::{ErrorKind, ToErrorKind};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, TryAcquireError};
use tokio::time::Sleep;
use tower::{Layer, Service};

use crate::state::State;

/// When a refused client should try again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// No place in the audit trail freed up within the wait: the writer is
/// behind or failing, and a request whose record could not be kept is not
/// served. Answered 503 ([`ErrorKind::AuditUnavailable`]) with
/// `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no audit place freed within the wait: the audit writer is behind or failing")]
pub struct AuditUnavailable {
    pub retry_after: Duration,
}

impl ToErrorKind for AuditUnavailable {
    fn error_kind(&self) -> ErrorKind {
        ErrorKind::AuditUnavailable
    }

    fn retry_after(&self) -> Option<Duration> {
        Some(self.retry_after)
    }
}

/// Applies [`AuditService`]; made by [`crate::Audit::layer`]. Sits directly
/// inside the exchange layer, whose sink must include
/// [`crate::Audit::sink`]: the sink is what gives the place back.
#[derive(Clone)]
pub struct AuditLayer {
    state: Arc<State>,
}

impl AuditLayer {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            state: self.state.clone(),
        }
    }
}

/// Takes a place for the request's record — at once if one is free, else
/// waiting up to `max_wait` — marks the request's exchange as reserved,
/// then calls the inner service. Without a place it fails with
/// [`AuditUnavailable`] and the inner service is never called.
#[derive(Clone)]
pub struct AuditService<S> {
    inner: S,
    state: Arc<State>,
}

impl<S, B> Service<Request<B>> for AuditService<S>
where
    S: Service<Request<B>> + Clone,
    S::Error: From<AuditUnavailable>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let places = self.state.places.clone();
        let phase = match places.clone().try_acquire_owned() {
            Ok(permit) => {
                let permit = admit(&req, permit);
                Phase::Admitted {
                    fut: self.inner.call(req),
                    permit,
                }
            }
            Err(TryAcquireError::NoPermits) if !self.state.max_wait.is_zero() => {
                self.state.waits.fetch_add(1, Ordering::Relaxed);
                // The clone is not ready yet; keep the one that is.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                Phase::Waiting {
                    place: Box::pin(places.acquire_owned()),
                    deadline: tokio::time::sleep(self.state.max_wait),
                    pending: Some((inner, req)),
                    state: self.state.clone(),
                }
            }
            // No wait allowed (or, never in practice, a closed semaphore).
            Err(_) => Phase::Refused {
                error: Some(refuse(&self.state)),
            },
        };
        ResponseFuture { phase }
    }
}

/// The place now belongs to the request's record, given back by the
/// writer once the record is written. Without an exchange (no exchange
/// layer above) no record will come: the request holds the place until
/// its response future ends.
fn admit<B>(req: &Request<B>, permit: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
    match Exchange::of(req) {
        Some(x) => {
            x.set_reserved();
            permit.forget();
            None
        }
        None => Some(permit),
    }
}

fn refuse<E: From<AuditUnavailable>>(state: &State) -> E {
    state.refused.fetch_add(1, Ordering::Relaxed);
    AuditUnavailable {
        retry_after: RETRY_AFTER,
    }
    .into()
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

pin_project_lite::pin_project! {
    /// Response future of [`AuditService`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        phase: Phase<S, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = PhaseProj]
    enum Phase<S, B>
    where
        S: Service<Request<B>>,
    {
        Waiting {
            place: Acquire,
            #[pin]
            deadline: Sleep,
            pending: Option<(S, Request<B>)>,
            state: Arc<State>,
        },
        Admitted {
            #[pin]
            fut: S::Future,
            permit: Option<OwnedSemaphorePermit>,
        },
        Refused {
            error: Option<S::Error>,
        },
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
    S::Error: From<AuditUnavailable>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.phase.as_mut().project() {
                PhaseProj::Waiting {
                    place,
                    deadline,
                    pending,
                    state,
                } => {
                    let permit = match place.as_mut().poll(cx) {
                        // An error would be a closed semaphore: never.
                        Poll::Ready(r) => r.ok(),
                        Poll::Pending => {
                            ready!(deadline.poll(cx));
                            None
                        }
                    };
                    let Some(permit) = permit else {
                        let error = refuse(state);
                        this.phase.set(Phase::Refused { error: None });
                        return Poll::Ready(Err(error));
                    };
                    let (mut inner, req) = pending.take().expect("polled after completion");
                    let permit = admit(&req, permit);
                    let fut = inner.call(req);
                    this.phase.set(Phase::Admitted { fut, permit });
                }
                PhaseProj::Admitted { fut, permit } => {
                    let out = ready!(fut.poll(cx));
                    permit.take();
                    return Poll::Ready(out);
                }
                PhaseProj::Refused { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            }
        }
    }
}
