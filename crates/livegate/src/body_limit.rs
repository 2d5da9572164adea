//! Request body limit.
//!
//! A declared `Content-Length` over the limit is refused at once with 413,
//! before a byte of the body is read. Otherwise the body is wrapped so that
//! reading past the limit fails (chunked uploads, or a Content-Length that
//! lies); the reader ([`crate::normalize`]) turns that failure into the same
//! 413. Either way at most `limit` bytes are ever buffered.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response, header::CONTENT_LENGTH};
use http_body_util::Limited;
use livegate_core::{ErrorKind, error_response, request_id};
use tower::{Layer, Service};

/// Applies [`BodyLimit`] with a byte limit.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimitLayer {
    limit: usize,
}

impl BodyLimitLayer {
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            inner,
            limit: self.limit,
        }
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct BodyLimit<S> {
    inner: S,
    limit: usize,
}

impl<S> Service<Request<Body>> for BodyLimit<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limit as u64) {
            let res = error_response(ErrorKind::BodyTooLarge, request_id(req.headers()));
            return ResponseFuture::Reject { res: Some(res) };
        }
        let limit = self.limit;
        let req = req.map(|b| Body::new(Limited::new(b, limit)));
        ResponseFuture::Inner {
            fut: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// Either the inner service's future or an immediate 413.
    #[project = Proj]
    pub enum ResponseFuture<F> {
        Inner { #[pin] fut: F },
        Reject { res: Option<Response<Body>> },
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Inner { fut } => fut.poll(cx),
            Proj::Reject { res } => Poll::Ready(Ok(res
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

/// True when a body read failed because the limit was passed.
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
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::StatusCode;
    use http_body_util::BodyExt;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;

    /// An inner service that reads the whole body and says how it went.
    fn reader(
        calls: Arc<AtomicUsize>,
    ) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
        service_fn(move |req: Request<Body>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let res = match req.into_body().collect().await {
                    Ok(c) => Response::new(Body::from(format!("read {}", c.to_bytes().len()))),
                    Err(e) if is_limit_error(&e) => error_response(ErrorKind::BodyTooLarge, ""),
                    Err(_) => error_response(ErrorKind::BodyReadFailed, ""),
                };
                Ok::<_, Infallible>(res)
            }
        })
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_never_reaches_the_inner_service() {
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = ServiceBuilder::new()
            .layer(BodyLimitLayer::new(10))
            .service(reader(calls.clone()));
        let req = Request::builder()
            .header(CONTENT_LENGTH, "11")
            .body(Body::from("01234567890"))
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn undeclared_bodies_are_cut_at_the_limit() {
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = ServiceBuilder::new()
            .layer(BodyLimitLayer::new(10))
            .service(reader(calls.clone()));
        // No Content-Length: only the stream tells.
        let over = Request::new(Body::from_stream(chunked(vec!["012345", "67890"])));
        let res = svc.clone().oneshot(over).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let at = Request::new(Body::from_stream(chunked(vec!["01234", "56789"])));
        let res = svc.oneshot(at).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"read 10");
    }

    fn chunked(
        parts: Vec<&'static str>,
    ) -> impl futures_core::Stream<Item = Result<bytes::Bytes, Infallible>> + Send {
        Chunks(parts.into_iter().map(bytes::Bytes::from).collect())
    }

    struct Chunks(std::collections::VecDeque<bytes::Bytes>);

    impl futures_core::Stream for Chunks {
        type Item = Result<bytes::Bytes, Infallible>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }
}
