//! The livegate gateway: the request stack and everything `livegate serve`
//! wires together.
//!
//! Request path (see [`gateway::router`], where the stack is built in one
//! place): request id → tenant auth ([`auth`]) → body limit
//! ([`body_limit`]) → payload normalization ([`normalize`]) → the vendor
//! call ([`proxy`]). Each stage is a plain `tower` layer; each rejection is
//! an [`livegate_core::ErrorKind`] answered in the vendor's error shape.
//!
//! [`runtime`] turns a validated configuration into the running parts
//! (stores, vendor client, the embedded simulator); [`server`] serves a
//! bound listener until a shutdown future resolves, then drains.

pub mod auth;
pub mod body_limit;
pub mod gateway;
pub mod logging;
pub mod normalize;
pub mod proxy;
pub mod request_id;
pub mod runtime;
pub mod server;

/// A boxed, sendable future, as the layers return.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;
