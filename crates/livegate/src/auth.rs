//! Tenant authentication as a tower layer.
//!
//! Wraps [`livegate_auth::Authenticator`] in tower-http's
//! `AsyncRequireAuthorization`: a request with a valid key of an enabled
//! tenant goes on with its [`Principal`] in the extensions and the key
//! headers removed (nothing after this point can forward or log them); any
//! other request is answered here, before its body is read.

use axum::body::Body;
use http::{Request, Response, header::AUTHORIZATION};
use livegate_auth::authn::{AuthError, Authenticator, Principal};
use livegate_core::{ErrorKind, error_response, request_id};
use tower_http::auth::{AsyncAuthorizeRequest, AsyncRequireAuthorizationLayer};

use crate::BoxFuture;

/// The layer to put in the stack.
pub fn layer(authn: Authenticator) -> AsyncRequireAuthorizationLayer<TenantAuth> {
    AsyncRequireAuthorizationLayer::new(TenantAuth { authn })
}

/// Authorizes requests by tenant key.
#[derive(Clone)]
pub struct TenantAuth {
    authn: Authenticator,
}

impl<B: Send + 'static> AsyncAuthorizeRequest<B> for TenantAuth {
    type RequestBody = B;
    type ResponseBody = Body;
    type Future = BoxFuture<Result<Request<B>, Response<Body>>>;

    fn authorize(&mut self, mut req: Request<B>) -> Self::Future {
        let authn = self.authn.clone();
        Box::pin(async move {
            match authn.authenticate(req.headers()).await {
                Ok(principal) => {
                    let span = tracing::Span::current();
                    span.record("tenant", principal.tenant.id.as_str());
                    span.record("key_id", principal.kid.as_ref() as &str);
                    req.headers_mut().remove("x-api-key");
                    req.headers_mut().remove(AUTHORIZATION);
                    req.extensions_mut().insert(principal);
                    Ok(req)
                }
                Err(e) => {
                    let kind = error_kind(&e);
                    if let AuthError::Store(err) = &e {
                        tracing::error!(error = %err, "key store failed");
                    } else {
                        tracing::info!(reason = kind.as_str(), "authentication refused");
                    }
                    Err(error_response(kind, request_id(req.headers())))
                }
            }
        })
    }
}

/// The client-facing error for an authentication failure.
pub fn error_kind(e: &AuthError) -> ErrorKind {
    match e {
        AuthError::Missing => ErrorKind::KeyMissing,
        AuthError::Conflicting => ErrorKind::KeyConflict,
        AuthError::Malformed | AuthError::Unknown => ErrorKind::KeyInvalid,
        AuthError::Revoked => ErrorKind::KeyRevoked,
        AuthError::Expired => ErrorKind::KeyExpired,
        AuthError::TenantDisabled => ErrorKind::TenantDisabled,
        AuthError::Store(_) => ErrorKind::StoreUnavailable,
    }
}

/// The authenticated tenant of a request (set by this layer).
pub fn principal<B>(req: &Request<B>) -> Option<&Principal> {
    req.extensions().get::<Principal>()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::StatusCode;
    use http_body_util::BodyExt;
    use livegate_auth::authn::SystemClock;
    use livegate_auth::hash::Pepper;
    use livegate_auth::key;
    use livegate_auth::store::{KeyRecord, MemoryStore, Tenant};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;

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
            .layer(layer(authn))
            .service(service_fn(move |_req: Request<Body>| {
                inner_calls.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(Response::new(Body::empty())) }
            }));
        for key in [None, Some("lvg_aaaaaaaaaaaa_"), Some("nonsense")] {
            let mut req = Request::builder().header("x-request-id", "rid-1");
            if let Some(k) = key {
                req = req.header("x-api-key", k);
            }
            let res = svc
                .clone()
                .oneshot(req.body(Body::from("{}")).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["requestId"], "rid-1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_valid_key_passes_with_its_principal_and_without_key_headers() {
        let (authn, key) = setup();
        let svc = ServiceBuilder::new()
            .layer(layer(authn))
            .service(service_fn(|req: Request<Body>| async move {
                let tenant = principal(&req)
                    .map(|p| p.tenant.id.clone())
                    .unwrap_or_default();
                let leaked = req.headers().contains_key("x-api-key")
                    || req.headers().contains_key(AUTHORIZATION);
                Ok::<_, Infallible>(Response::new(Body::from(format!("{tenant} {leaked}"))))
            }));
        let req = Request::builder()
            .header(AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"acme false");
    }
}
