//! The request's tenant, as the layers after authentication read it.
//!
//! The stack resolves a tenant's whole policy once, right after
//! authentication, into one request extension of its own type. Each layer
//! that needs a part of it names what it reads with a trait — this one for
//! the tenant's id, and one per crate on top of it (the rate limit's
//! `RatePolicy`, the payload's `ImagePolicySource`, protection's
//! `ProtectionSource`) — and is told the extension's type once, when the
//! stack is built (`.policy::<P>()`). No layer works a policy out again, and
//! no closure carries it.

use std::sync::Arc;

/// The tenant a request belongs to.
pub trait Tenanted: Send + Sync + 'static {
    /// The tenant's id (shared, so reading it copies nothing).
    fn tenant_id(&self) -> &Arc<str>;
}

/// Reads `P`'s tenant id from a request's extensions: the function a layer
/// keeps when told the extension's type.
pub fn tenant_of<P: Tenanted>(ext: &http::Extensions) -> Option<Arc<str>> {
    ext.get::<P>().map(|p| p.tenant_id().clone())
}
