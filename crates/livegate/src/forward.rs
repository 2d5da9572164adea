//! The innermost service: hands the prepared request — its body and its
//! trace context, none of the client's headers — to the vendor client (or
//! whatever wraps it) and turns its answer into the client's
//! response — the vendor's status and JSON body unchanged, plus
//! `x-transaction-id` — recording the upstream facts in the exchange.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response};
use livegate_core::TRANSACTION_ID_HEADER;
use livegate_core::exchange::{Exchange, ForwardedAnswer, UpstreamFacts};
use livegate_upstream::{UpstreamError, VendorResponse};
use tower::Service;
use tracing::Instrument;

use crate::error::GatewayError;

/// Wraps the vendor service `V`.
#[derive(Clone, Debug)]
pub struct Forward<V> {
    vendor: V,
    /// The vendor's URL, for the client span.
    endpoint: http::Uri,
}

impl<V> Forward<V> {
    pub fn new(vendor: V, endpoint: http::Uri) -> Self {
        Self { vendor, endpoint }
    }
}

impl<V> Service<Request<Bytes>> for Forward<V>
where
    V: Service<Request<Bytes>, Response = VendorResponse, Error = UpstreamError>,
    V::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, GatewayError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.vendor.poll_ready(cx).map_err(GatewayError::from)
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let exchange = Exchange::of(&req).cloned();
        // The vendor request carries none of the client's headers: only what
        // is put here (and what the vendor client sets itself).
        let (mut parts, body) = req.into_parts();
        parts.headers.clear();
        let mut req = Request::from_parts(parts, body);
        // The vendor call's client span; the vendor receives its trace
        // context as `traceparent` (nothing when tracing is off).
        let span = livegate_telemetry::client_span(req.method(), &self.endpoint);
        livegate_telemetry::inject_span(&span, req.headers_mut());
        let sent_bytes = req.body().len();
        let started = Instant::now();
        let call = span.in_scope(|| self.vendor.call(req));
        Box::pin(async move {
            let answer = call.instrument(span.clone()).await;
            match &answer {
                Ok(v) => livegate_telemetry::record_status(&span, v.status),
                Err(e) => {
                    span.record("error.type", crate::error::upstream(e).code_str());
                    span.record("otel.status_code", "ERROR");
                }
            }
            if let Some(x) = &exchange {
                x.set_upstream(match &answer {
                    Ok(v) => UpstreamFacts {
                        status: Some(v.status.as_u16()),
                        transaction_id: v.answer.transaction_id.clone(),
                        score: v.answer.liveness_score,
                        error_code: v.answer.error_code,
                        latency: v.elapsed,
                        sent_bytes,
                        received_bytes: v.body.len(),
                    },
                    Err(_) => UpstreamFacts {
                        latency: started.elapsed(),
                        sent_bytes,
                        ..UpstreamFacts::default()
                    },
                });
            }
            let v = answer?;
            let mut res = Response::new(Body::from(v.body.clone()));
            // For the protection layer: the answer's facts and the body,
            // shared (a reference count, not a copy).
            res.extensions_mut().insert(ForwardedAnswer {
                body: v.body,
                transaction_id: v.answer.transaction_id.clone(),
                score: v.answer.liveness_score,
            });
            *res.status_mut() = v.status;
            let h = res.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Some(t) = v.answer.transaction_id.as_deref() {
                if let Ok(t) = HeaderValue::from_str(t) {
                    h.insert(TRANSACTION_ID_HEADER, t);
                }
            }
            Ok(res)
        })
    }
}
