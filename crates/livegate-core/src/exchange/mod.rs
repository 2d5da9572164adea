//! One record per liveness request: what happened to it, written by the
//! layer that learnt each fact and read once, when the request ends.
//!
//! [`ExchangeLayer`] is the outermost layer of the liveness route. For
//! every request it creates an [`Exchange`] — a cheap handle on the
//! record under construction — and puts it in the request extensions.
//! Each layer below writes what it learns: the auth layer the tenant and
//! key id, the payload layer the image facts (format, size, SHA-256),
//! the vendor adapter the upstream outcome. When the request ends the
//! layer completes the record into an [`ExchangeRecord`] and hands it to
//! the [`ExchangeSink`] **exactly once**, however it ended:
//!
//! - a response (the vendor's answer, or an error the gateway answered
//!   itself: the stack's typed error is rendered here, by
//!   [`crate::error_response`], the one renderer);
//! - the client went away, so the response future was dropped
//!   ([`Outcome::ClientGone`]);
//! - a panic anywhere below, caught here and answered 500 with the request
//!   id ([`Outcome::Panicked`]).
//!
//! Audit, metrics and spans are further sinks of the same record, so none
//! of them re-derives facts from headers or bodies. The record never holds
//! the image or a key: only the ids, sizes and digests listed below.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use livegate_core::exchange::{Exchange, ExchangeLayer, ExchangeRecord, ExchangeSink};
//! use livegate_core::{ErrorKind, SystemClock, ToErrorKind};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("no key")]
//! struct NoKey;
//! impl ToErrorKind for NoKey {
//!     fn error_kind(&self) -> ErrorKind { ErrorKind::KeyMissing }
//! }
//!
//! struct Print;
//! impl ExchangeSink for Print {
//!     fn emit(&self, record: ExchangeRecord) { println!("{:?} {:?}", record.outcome, record.error); }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let svc = ServiceBuilder::new()
//!     .layer(ExchangeLayer::new(Arc::new(Print), Arc::new(SystemClock)))
//!     .service(service_fn(|req: Request<Bytes>| async move {
//!         // A layer writes what it learnt into the record...
//!         Exchange::of(&req).unwrap().set_principal("acme", "abc123def456");
//!         // ...and fails with a typed error, rendered above.
//!         Err::<Response<Bytes>, _>(NoKey)
//!     }));
//! let res = svc.oneshot(Request::new(Bytes::new())).await.unwrap();
//! assert_eq!(res.status(), 401);
//! # });
//! ```

mod layer;
mod record;
mod sink;

pub use layer::{ExchangeLayer, ExchangeService, ResponseFuture};
pub use record::{
    Exchange, ExchangeRecord, ForwardedAnswer, ImageFacts, Outcome, PrincipalFacts,
    ProtectionFacts, UpstreamFacts,
};
pub use sink::{ExchangeSink, LogSink};
