//! Headers that must appear once: `x-api-key`, `Authorization`,
//! `Idempotency-Key` and `traceparent`. Sent twice with different values,
//! the request fails with [`DuplicateHeader`] (400) before anything reads
//! them: parsers and proxies disagree on which copy wins, so the gateway
//! does not guess (as for a repeated `faceImage`). The same value repeated
//! is harmless and accepted.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Request};
use tower::{Layer, Service};

/// The headers checked, as they are named in messages.
pub const SINGLE_HEADERS: [&str; 4] = [
    "x-api-key",
    "Authorization",
    "Idempotency-Key",
    "traceparent",
];

/// A header of [`SINGLE_HEADERS`] came twice with different values.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the {name} header appears more than once with different values")]
pub struct DuplicateHeader {
    pub name: &'static str,
}

/// The first header of [`SINGLE_HEADERS`] repeated with different values.
pub fn check(headers: &HeaderMap) -> Result<(), DuplicateHeader> {
    for name in SINGLE_HEADERS {
        let mut values = headers.get_all(name).iter();
        if let Some(first) = values.next() {
            if values.any(|v| v != first) {
                return Err(DuplicateHeader { name });
            }
        }
    }
    Ok(())
}

/// Applies [`SingleHeaders`]; see the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleHeadersLayer;

impl<S> Layer<S> for SingleHeadersLayer {
    type Service = SingleHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SingleHeaders { inner }
    }
}

/// See the [module docs](self).
#[derive(Clone, Debug)]
pub struct SingleHeaders<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for SingleHeaders<S>
where
    S: Service<Request<B>>,
    S::Error: From<DuplicateHeader>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match check(req.headers()) {
            Err(e) => ResponseFuture {
                state: State::Refused {
                    error: Some(e.into()),
                },
            },
            Ok(()) => ResponseFuture {
                state: State::Called {
                    fut: self.inner.call(req),
                },
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`SingleHeaders`].
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        Refused { error: Option<E> },
        Called { #[pin] fut: F },
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
            StateProj::Called { fut } => fut.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn different_values_are_refused_naming_the_header() {
        for (k, name) in [
            ("x-api-key", "x-api-key"),
            ("authorization", "Authorization"),
            ("idempotency-key", "Idempotency-Key"),
            ("traceparent", "traceparent"),
        ] {
            let e = check(&headers(&[(k, "a"), ("x-other", "1"), (k, "b")])).unwrap_err();
            assert_eq!(e.name, name);
            assert!(check(&headers(&[(k, "a"), (k, "a")])).is_ok());
            assert!(check(&headers(&[(k, "a")])).is_ok());
        }
        assert!(check(&headers(&[("accept", "a"), ("accept", "b")])).is_ok());
    }
}
