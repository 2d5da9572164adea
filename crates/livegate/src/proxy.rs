//! The innermost service: sends the normalized body to the vendor and
//! hands the vendor's status and JSON body back unchanged, adding
//! `x-transaction-id`. Vendor failures become 502/504 in the vendor's error
//! shape; the vendor's own headers are not passed on.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{HeaderValue, Request, Response, header::CONTENT_TYPE};
use http_body_util::BodyExt;
use livegate_core::{ErrorKind, TRANSACTION_ID_HEADER, error_response, request_id};
use livegate_upstream::{VendorClient, VendorResponse};
use tower::Service;

use crate::BoxFuture;

/// Forwards to the vendor.
#[derive(Clone)]
pub struct Proxy {
    vendor: VendorClient,
}

impl Proxy {
    pub fn new(vendor: VendorClient) -> Self {
        Self { vendor }
    }
}

/// What the vendor answered, left in the response extensions for the
/// layers above (audit, metrics).
#[derive(Clone, Debug)]
pub struct VendorOutcome(pub VendorResponse);

impl Service<Request<Body>> for Proxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let vendor = self.vendor.clone();
        Box::pin(async move {
            let rid = request_id(req.headers()).to_owned();
            // The normalize layer put a complete in-memory body here, so this
            // takes the buffer as is.
            let body = match req.into_body().collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => return Ok(error_response(ErrorKind::Internal, &rid)),
            };
            match vendor.call(body).await {
                Ok(v) => {
                    let mut res = Response::new(Body::from(v.body.clone()));
                    *res.status_mut() = v.status;
                    let h = res.headers_mut();
                    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    if let Some(t) = v.transaction_id.as_deref() {
                        if let Ok(t) = HeaderValue::from_str(t) {
                            h.insert(TRANSACTION_ID_HEADER, t);
                        }
                    }
                    res.extensions_mut().insert(VendorOutcome(v));
                    Ok(res)
                }
                Err(e) => {
                    tracing::warn!(error = %e, kind = e.kind().as_str(), "vendor call failed");
                    Ok(error_response(e.kind(), &rid))
                }
            }
        })
    }
}
