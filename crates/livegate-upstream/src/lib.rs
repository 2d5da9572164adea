//! The vendor client, as a [`tower::Service`].
//!
//! [`VendorClient`] owns the one outbound call of the gateway:
//! `POST {base}/modules/liveness` over a pooled hyper client speaking
//! HTTP/1.1 or HTTP/2 (ALPN over rustls with the Mozilla roots plus an
//! optional private CA, or h2c by prior knowledge), with a connect timeout
//! and a total timeout over the whole exchange (send and read the full
//! answer). It is the only place the vendor key is put on the wire.
//!
//! It checks that the answer is one JSON object of bounded size and reads a
//! few typed facts from it ([`VendorAnswer`]); the vendor's status and body
//! are handed back unchanged. A 401 or 403 from the vendor is an error
//! ([`UpstreamError::Auth`]): it means the gateway's key is wrong, which the
//! gateway's client must not be told as if it were their fault.
//!
//! Around it, two layers that know the vendor's failure modes:
//! - [`CircuitBreakerLayer`] ([`breaker`]): after repeated failures (or too
//!   high a share of them), calls fail at once with
//!   [`UpstreamError::CircuitOpen`] for a while, without calling the vendor;
//!   a [`BreakerHandle`] reports the state (for `/readyz`).
//! - [`ConnectRetryLayer`] ([`retry`]): a call that failed with
//!   [`UpstreamError::ConnectFailed`] — no connection, so provably nothing
//!   sent and nothing billed — is tried once more, within a retry budget.
//!   Nothing else is ever retried: a liveness call is paid for, and not
//!   idempotent from the bill's point of view. (The pooled client also
//!   resends, by itself, a request that met a pooled connection the vendor
//!   had closed before the request was written.)
//!
//! The `[vendor]` section is [`UpstreamSettings`]; it builds the client's
//! [`VendorSettings`] and the stack of both layers around the client
//! ([`UpstreamSettings::stack`]).
//!
//! It does not own: tracing (a layer around it), or what the gateway's
//! client sees for an [`UpstreamError`] (the binary maps errors to its own
//! error kinds).
//!
//! # What reaches the vendor
//! The request's method and URI are ignored; its body must be the complete
//! vendor JSON body (`{"faceImage":"…"}`) and is sent as is, without a copy.
//! Its headers are forwarded, so the stack decides what passes (a W3C
//! `traceparent`, say) by what it puts on the request, except:
//! - framing and hop-by-hop headers: `host`, `content-length`,
//!   `transfer-encoding`, `connection` (and any header it names),
//!   `keep-alive`, `proxy-connection`, `te`, `trailer`, `upgrade`;
//! - credentials: `x-api-key`, `authorization`, `proxy-authorization`,
//!   `cookie` — a tenant's key can never pass;
//! - the ones the client sets itself: `content-type: application/json`,
//!   `user-agent: livegate/<version>` and `x-api-key: <vendor key>` (marked
//!   sensitive, so kept out of HPACK tables and debug output).
//!
//! The answer is not decoded: do not forward an `accept-encoding`.
//!
//! # Example
//! The breaker outside the retry, so it counts one outcome per call and an
//! open breaker's refusal is never retried:
//! ```no_run
//! use bytes::Bytes;
//! use livegate_upstream::{
//!     BreakerSettings, CircuitBreakerLayer, ConnectRetryLayer, RetrySettings, UpstreamError,
//!     VendorClient, VendorSettings,
//! };
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! /// The binary's own error kinds.
//! #[derive(Debug)]
//! enum Failure {
//!     VendorTimeout,
//!     Vendor(UpstreamError),
//! }
//!
//! # async fn example(settings: &VendorSettings) -> Result<(), Box<dyn std::error::Error>> {
//! // One breaker per vendor; keep its handle for `/readyz`.
//! let breaker = CircuitBreakerLayer::new(BreakerSettings::default());
//! let breaker_state = breaker.handle();
//! let retry = ConnectRetryLayer::new(RetrySettings::default());
//!
//! let mut vendor = ServiceBuilder::new()
//!     .map_err(|e: UpstreamError| {
//!         if e.is_timeout() { Failure::VendorTimeout } else { Failure::Vendor(e) }
//!     })
//!     .layer(breaker)
//!     .layer(retry)
//!     .service(VendorClient::new(settings)?);
//!
//! let request = http::Request::builder()
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(Bytes::from_static(br#"{"faceImage":"/9j/4AAQ..."}"#))?;
//! match vendor.ready().await.unwrap().call(request).await {
//!     Ok(response) => println!("{} {:?}", response.status, response.answer.liveness_score),
//!     Err(failure) => println!("{failure:?}"),
//! }
//! println!("breaker: {}", breaker_state.state().as_str());
//! # Ok(())
//! # }
//! ```

mod answer;
pub mod breaker;
mod client;
mod error;
pub mod retry;
mod settings;
#[cfg(test)]
mod test_vendor;
mod tls;

pub use answer::VendorAnswer;
pub use breaker::{
    BreakerHandle, BreakerSettings, BreakerState, CircuitBreaker, CircuitBreakerLayer,
};
pub use client::{ResponseFuture, VendorClient, VendorResponse, VendorSettings};
pub use error::UpstreamError;
pub use retry::{ConnectRetry, ConnectRetryLayer, ConnectRetryPolicy, RetrySettings};
pub use settings::{UpstreamSettings, VendorStack};
