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
//! It does not own: retries (none: a liveness call is paid for, and not
//! idempotent from the bill's point of view), circuit breaking or tracing
//! (layers around it), or what the gateway's client sees for an
//! [`UpstreamError`] (the binary maps errors to its own error kinds).
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
//! ```no_run
//! use bytes::Bytes;
//! use livegate_upstream::{UpstreamError, VendorClient, VendorSettings};
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
//! let mut vendor = ServiceBuilder::new()
//!     // A circuit breaker and a trace layer would go here.
//!     .map_err(|e: UpstreamError| {
//!         if e.is_timeout() { Failure::VendorTimeout } else { Failure::Vendor(e) }
//!     })
//!     .service(VendorClient::new(settings)?);
//!
//! let request = http::Request::builder()
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(Bytes::from_static(br#"{"faceImage":"/9j/4AAQ..."}"#))?;
//! match vendor.ready().await.unwrap().call(request).await {
//!     Ok(response) => println!("{} {:?}", response.status, response.answer.liveness_score),
//!     Err(failure) => println!("{failure:?}"),
//! }
//! # Ok(())
//! # }
//! ```

mod answer;
mod client;
mod error;
mod tls;

pub use answer::VendorAnswer;
pub use client::{ResponseFuture, VendorClient, VendorResponse, VendorSettings};
pub use error::UpstreamError;
