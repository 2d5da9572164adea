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
