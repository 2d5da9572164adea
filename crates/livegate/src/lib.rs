//! The livegate gateway: the one place the request stack is composed, and
//! everything `livegate serve` wires together.
//!
//! The layers live with their concern — [`livegate_core::exchange`] (the
//! record and the error renderer), [`livegate_auth::layer`] (tenant keys),
//! [`livegate_payload::layer`] (body and image), [`livegate_upstream`] (the
//! vendor client as a `tower::Service`) — and [`gateway`] stacks them, with
//! the reason for each position. [`error`] is the stack's one error type,
//! [`forward`] turns the vendor's answer into the client's response, [`policy`] resolves a
//! tenant's policy once for every later layer.
//!
//! [`runtime`] turns a validated configuration into the running parts
//! (stores, vendor client, the embedded simulator); [`server`] serves a
//! bound listener until a shutdown future resolves, then drains.

pub mod admin_cli;
pub mod error;
pub mod forward;
pub mod gateway;
pub mod linger;
pub mod policy;
pub mod request_id;
pub mod runtime;
pub mod server;
pub mod tls;
pub mod trace;
