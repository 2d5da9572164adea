use std::convert::Infallible;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::exchange::{Exchange, ExchangeSink, Outcome};
use crate::{Clock, ErrorKind, ToErrorKind, error_response, error_response_retry, request_id};

/// Applies [`ExchangeService`]: see the [module docs](crate::exchange).
#[derive(Clone)]
pub struct ExchangeLayer {
    sink: Arc<dyn ExchangeSink>,
    clock: Arc<dyn Clock>,
}

impl ExchangeLayer {
    pub fn new(sink: Arc<dyn ExchangeSink>, clock: Arc<dyn Clock>) -> Self {
        Self { sink, clock }
    }
}

impl<S> Layer<S> for ExchangeLayer {
    type Service = ExchangeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ExchangeService {
            inner,
            sink: self.sink.clone(),
            clock: self.clock.clone(),
        }
    }
}

/// Creates, completes and emits the exchange record of each request, and
/// renders the stack's typed errors. Never fails: every error becomes the
/// documented response.
#[derive(Clone)]
pub struct ExchangeService<S> {
    inner: S,
    sink: Arc<dyn ExchangeSink>,
    clock: Arc<dyn Clock>,
}

impl<S, B, RB> Service<Request<B>> for ExchangeService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: ToErrorKind,
    RB: From<Bytes>,
{
    type Response = Response<RB>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A stack whose readiness can fail would need its error answered
        // per request; the liveness stack's layers are always ready or wait.
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                tracing::error!(error = %e, "liveness stack not ready");
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let rid = request_id(req.headers()).to_owned();
        let exchange = Exchange::new(&rid, self.clock.now());
        req.extensions_mut().insert(exchange.clone());
        let guard = Guard {
            exchange,
            sink: self.sink.clone(),
            request_id: rid,
            done: false,
        };
        let state = match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(fut) => State::Inner { fut },
            Err(_) => State::Panicked,
        };
        ResponseFuture { state, guard }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`ExchangeService`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        guard: Guard,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] fut: F },
        Panicked,
        Done,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: ToErrorKind,
    RB: From<Bytes>,
{
    type Output = Result<Response<RB>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let polled = match this.state.as_mut().project() {
            StateProj::Inner { fut } => catch_unwind(AssertUnwindSafe(|| fut.poll(cx))),
            StateProj::Panicked => Err(Box::new("panicked in call") as Box<_>),
            StateProj::Done => panic!("ResponseFuture polled after completion"),
        };
        let mut res = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(res))) => this.guard.answered(res),
            Ok(Poll::Ready(Err(e))) => this.guard.failed(&e),
            Err(_) => this.guard.panicked(),
        };
        let extra = this.guard.exchange.take_response_headers();
        res.headers_mut().extend(extra);
        // After a panic the inner future's state is unknown: it is dropped
        // here and never polled again.
        this.state.set(State::Done);
        Poll::Ready(Ok(res))
    }
}

/// Emits the record exactly once: on completion through one of the
/// methods below, or from `Drop` when the future is dropped unfinished
/// (the client went away).
struct Guard {
    exchange: Exchange,
    sink: Arc<dyn ExchangeSink>,
    request_id: String,
    done: bool,
}

impl Guard {
    fn answered<RB>(&mut self, res: Response<RB>) -> Response<RB> {
        let status = res.status().as_u16();
        // A layer may have answered an error itself with the renderer.
        let error = res.extensions().get::<ErrorKind>().copied();
        let outcome = error.map_or(Outcome::Forwarded, outcome_of);
        self.emit(outcome, Some(status), error, None);
        res
    }

    fn failed<RB: From<Bytes>, E: ToErrorKind>(&mut self, e: &E) -> Response<RB> {
        let kind = e.error_kind();
        // Client errors' causes are the kind itself; only operators'
        // problems carry a description (it never holds client input).
        let cause = kind.status().is_server_error().then(|| e.to_string());
        self.emit(
            outcome_of(kind),
            Some(kind.status().as_u16()),
            Some(kind),
            cause,
        );
        error_response_retry(kind, &self.request_id, e.retry_after())
    }

    fn panicked<RB: From<Bytes>>(&mut self) -> Response<RB> {
        let kind = ErrorKind::Internal;
        self.emit(
            Outcome::Panicked,
            Some(kind.status().as_u16()),
            Some(kind),
            Some("request handler panicked".into()),
        );
        error_response(kind, &self.request_id)
    }

    fn emit(
        &mut self,
        outcome: Outcome,
        status: Option<u16>,
        error: Option<ErrorKind>,
        cause: Option<String>,
    ) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let record = self.exchange.complete(outcome, status, error, cause);
        self.sink.emit(record);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            self.emit(Outcome::ClientGone, None, None, None);
        }
    }
}

fn outcome_of(kind: ErrorKind) -> Outcome {
    if kind.status().is_server_error() {
        Outcome::Failed
    } else {
        Outcome::Rejected
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::task::Waker;

    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::SystemClock;
    use crate::exchange::ExchangeRecord;

    #[derive(Debug, thiserror::Error)]
    #[error("store down")]
    struct StoreDown;

    impl ToErrorKind for StoreDown {
        fn error_kind(&self) -> ErrorKind {
            ErrorKind::StoreUnavailable
        }
    }

    #[derive(Default)]
    struct Collect(Mutex<Vec<ExchangeRecord>>);

    impl ExchangeSink for Collect {
        fn emit(&self, record: ExchangeRecord) {
            self.0.lock().unwrap().push(record);
        }
    }

    fn layer(sink: &Arc<Collect>) -> ExchangeLayer {
        ExchangeLayer::new(sink.clone(), Arc::new(SystemClock))
    }

    fn req() -> Request<()> {
        Request::builder()
            .header(crate::REQUEST_ID_HEADER, "rid-7")
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn an_error_is_rendered_and_recorded_once() {
        let sink = Arc::new(Collect::default());
        let svc = layer(&sink).layer(service_fn(|_: Request<()>| async {
            Err::<Response<Bytes>, _>(StoreDown)
        }));
        let res = svc.oneshot(req()).await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()[crate::REQUEST_ID_HEADER], "rid-7");
        let records = sink.0.lock().unwrap();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.request_id, "rid-7");
        assert_eq!(r.error, Some(ErrorKind::StoreUnavailable));
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.status, Some(503));
        // A 5xx carries its cause for operators.
        assert_eq!(r.cause.as_deref(), Some("store down"));
    }

    #[tokio::test]
    async fn a_dropped_request_is_recorded_once_as_client_gone() {
        let sink = Arc::new(Collect::default());
        let mut svc = layer(&sink).layer(service_fn(|req: Request<()>| async move {
            Exchange::of(&req)
                .unwrap()
                .set_principal("acme", "abc123def456");
            std::future::pending::<Result<Response<Bytes>, StoreDown>>().await
        }));
        let mut fut = Box::pin(svc.call(req()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert!(sink.0.lock().unwrap().is_empty());
        drop(fut);
        let records = sink.0.lock().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].outcome, Outcome::ClientGone);
        assert_eq!(records[0].status, None);
        assert_eq!(records[0].principal.as_ref().unwrap().tenant, "acme");
    }

    #[tokio::test]
    async fn a_panic_in_call_or_in_the_future_is_answered_and_recorded_once() {
        let sink = Arc::new(Collect::default());
        // In the future.
        let svc = layer(&sink).layer(service_fn(|_: Request<()>| async {
            if true {
                panic!("bug");
            }
            Ok::<Response<Bytes>, StoreDown>(Response::new(Bytes::new()))
        }));
        let res = svc.oneshot(req()).await.unwrap();
        assert_eq!(res.status(), 500);
        // In `call` itself.
        #[derive(Clone)]
        struct PanicsInCall;
        impl Service<Request<()>> for PanicsInCall {
            type Response = Response<Bytes>;
            type Error = StoreDown;
            type Future = std::future::Ready<Result<Response<Bytes>, StoreDown>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), StoreDown>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Request<()>) -> Self::Future {
                panic!("bug in call")
            }
        }
        let res = layer(&sink)
            .layer(PanicsInCall)
            .oneshot(req())
            .await
            .unwrap();
        assert_eq!(res.status(), 500);
        let records = sink.0.lock().unwrap();
        assert_eq!(records.len(), 2);
        for r in records.iter() {
            assert_eq!(r.outcome, Outcome::Panicked);
            assert_eq!(r.error, Some(ErrorKind::Internal));
        }
    }
}
