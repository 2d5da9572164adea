//! Tenant authentication as a tower layer.
//!
//! A request with a valid key of an enabled tenant goes on with its
//! [`Principal`] in the extensions, the tenant and key id written into its
//! [`Exchange`] record, and the key headers (`x-api-key`, `Authorization`)
//! removed, so nothing after this point can forward or log them. Any other
//! request fails here with an [`AuthError`] — before its body is read, so an
//! unauthenticated client cannot make the gateway buffer a 10 MB upload.
//!
//! The error is the inner service's error type (`From<AuthError>`), so one
//! place renders every error of the stack. A missing, conflicting or
//! non-UTF-8 key is refused without allocating or boxing; a key to check
//! costs one store lookup.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use http::Request;
//! use livegate_auth::{AuthError, AuthLayer, Authenticator, MemoryStore, Pepper, Principal};
//! use livegate_core::SystemClock;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let authn = Authenticator::new(
//!     Arc::new(MemoryStore::new()),
//!     Pepper::new("a-pepper-of-16-bytes-or-more").unwrap(),
//!     Arc::new(SystemClock),
//! );
//! let svc = ServiceBuilder::new()
//!     .layer(AuthLayer::new(authn))
//!     .service(service_fn(|req: Request<()>| async move {
//!         let tenant = req.extensions().get::<Principal>().unwrap().tenant.id.clone();
//!         Ok::<_, AuthError>(tenant)
//!     }));
//! let err = svc.oneshot(Request::new(())).await.unwrap_err();
//! assert!(matches!(err, AuthError::Missing));
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Request;
use http::header::AUTHORIZATION;
use livegate_core::exchange::Exchange;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::authn::{API_KEY_HEADER, AuthError, Authenticator, Principal, presented_key};

/// Applies [`Auth`]; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct AuthLayer {
    authn: Authenticator,
}

impl AuthLayer {
    pub fn new(authn: Authenticator) -> Self {
        Self { authn }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            authn: self.authn.clone(),
        }
    }
}

/// See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    authn: Authenticator,
}

impl<S, B> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>> + Clone,
    S::Error: From<AuthError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, B, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let key = match presented_key(req.headers()) {
            Ok(key) => key.to_owned(),
            Err(e) => {
                refused(&e);
                return ResponseFuture {
                    state: State::Refused {
                        error: Some(e.into()),
                    },
                };
            }
        };
        let authn = self.authn.clone();
        // A child of the request's span, for traces: the key lookup alone.
        // Target `livegate::trace`: exported to traces, never formatted into logs.
        let span = tracing::info_span!(target: "livegate::trace", "auth", otel.kind = "internal");
        let check: AuthFuture =
            Box::pin(async move { authn.authenticate_key(&key).await }.instrument(span));
        // The clone is not ready yet; keep the one that is (tower's usual dance).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Checking {
                check,
                req: Some(req),
                inner,
            },
        }
    }
}

type AuthFuture = Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send>>;

pin_project_lite::pin_project! {
    /// Response future of [`Auth`].
    pub struct ResponseFuture<F, S, B, E> {
        #[pin]
        state: State<F, S, B, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, S, B, E> {
        Refused { error: Option<E> },
        Checking { check: AuthFuture, req: Option<Request<B>>, inner: S },
        Inner { #[pin] fut: F },
    }
}

impl<F, S, B, R, E> Future for ResponseFuture<F, S, B, E>
where
    S: Service<Request<B>, Response = R, Error = E, Future = F>,
    F: Future<Output = Result<R, E>>,
    E: From<AuthError>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Refused { error } => {
                    let e = error
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Err(e));
                }
                StateProj::Checking { check, req, inner } => {
                    let verdict = ready!(check.as_mut().poll(cx));
                    let mut req = req.take().expect("ResponseFuture polled after completion");
                    let principal = match verdict {
                        Ok(p) => p,
                        Err(e) => {
                            refused(&e);
                            return Poll::Ready(Err(e.into()));
                        }
                    };
                    admit(&mut req, principal);
                    let fut = inner.call(req);
                    this.state.set(State::Inner { fut });
                }
                StateProj::Inner { fut } => return fut.poll(cx),
            }
        }
    }
}

/// Lets an authenticated request on: the principal in its extensions and
/// record, the key headers gone.
fn admit<B>(req: &mut Request<B>, principal: Principal) {
    let span = tracing::Span::current();
    span.record("tenant", principal.tenant.id.as_str());
    span.record("key_id", principal.kid().as_str());
    if let Some(x) = Exchange::of(req) {
        x.set_principal(&principal.tenant.id, principal.kid().as_str());
    }
    req.headers_mut().remove(API_KEY_HEADER);
    req.headers_mut().remove(AUTHORIZATION);
    req.extensions_mut().insert(principal);
}

fn refused(e: &AuthError) {
    if let AuthError::Store(err) = e {
        tracing::error!(error = %err, "key store failed");
    } else {
        tracing::info!(reason = %e, "authentication refused");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use livegate_core::SystemClock;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;
    use crate::MemoryStore;
    use crate::hash::Pepper;
    use crate::key;
    use crate::store::{KeyRecord, Tenant};

    fn setup() -> (Authenticator, String) {
        let pepper = Pepper::new("layer-test-pepper-0123").unwrap();
        let store = MemoryStore::new();
        store.put_tenant(Tenant::new("acme"));
        let new = key::generate();
        store.put_key(KeyRecord {
            kid: new.kid.clone(),
            tenant_id: "acme".into(),
            hash: new.hash(&pepper),
            expires_at: None,
            revoked: false,
            created_at: None,
            rotated_from: None,
            last_used_at: None,
        });
        let authn = Authenticator::new(Arc::new(store), pepper, Arc::new(SystemClock));
        (authn, new.plaintext.expose().to_owned())
    }

    #[tokio::test]
    async fn refusals_never_reach_the_inner_service() {
        let (authn, _) = setup();
        let calls = Arc::new(AtomicUsize::new(0));
        let inner_calls = calls.clone();
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(authn))
            .service(service_fn(move |_req: Request<()>| {
                inner_calls.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, AuthError>(()) }
            }));
        for (key, expected) in [
            (None, "missing api key"),
            (Some("lvg_aaaaaaaaaaaa_"), "malformed api key"),
            (Some("nonsense"), "malformed api key"),
        ] {
            let mut req = Request::builder();
            if let Some(k) = key {
                req = req.header("x-api-key", k);
            }
            let err = svc
                .clone()
                .oneshot(req.body(()).unwrap())
                .await
                .unwrap_err();
            assert_eq!(err.to_string(), expected);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_valid_key_passes_with_its_principal_and_without_key_headers() {
        let (authn, key) = setup();
        let svc = ServiceBuilder::new()
            .layer(AuthLayer::new(authn))
            .service(service_fn(|req: Request<()>| async move {
                let tenant = req
                    .extensions()
                    .get::<Principal>()
                    .map(|p| p.tenant.id.clone())
                    .unwrap_or_default();
                let leaked = req.headers().contains_key("x-api-key")
                    || req.headers().contains_key(AUTHORIZATION);
                Ok::<_, AuthError>(format!("{tenant} {leaked}"))
            }));
        let req = Request::builder()
            .header(AUTHORIZATION, format!("Bearer {key}"))
            .body(())
            .unwrap();
        assert_eq!(svc.oneshot(req).await.unwrap(), "acme false");
    }
}
