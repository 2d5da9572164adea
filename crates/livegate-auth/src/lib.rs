//! Tenant authentication for livegate: who is calling, and may they?
//!
//! Owns:
//! - [`key`]: the tenant key format `lvg_<kid>_<secret>`, generation and
//!   strict parsing;
//! - [`hash`]: the keyed hash (HMAC-SHA-256 with a server-side [`Pepper`])
//!   that is all a store ever holds of a key, compared in constant time;
//! - [`store`]: the [`KeyStore`] trait the request path reads tenants and
//!   key records through, and the records themselves;
//! - [`admin`]: the [`KeyAdmin`] trait the admin API writes through;
//! - [`memory`]: the in-memory [`MemoryStore`] (both traits);
//! - [`authn`]: reading the key from request headers and the
//!   [`Authenticator`] that turns it into a [`Principal`] or an
//!   [`AuthError`].
//!
//! - [`layer`]: the tower layer ([`AuthLayer`]) that puts the authenticator on
//!   the request path.
//! - [`redis`]: the shared [`RedisStore`] (tenants and keys in Redis behind
//!   a per-replica cache, invalidated by pub/sub, honouring a revoke on
//!   every replica within 1 s).
//!
//! Does not own: mapping [`AuthError`] to statuses and error codes (the
//! binary's one error type), the admin API, configuration loading
//! (including reading the pepper from a secret file).

pub mod admin;
pub mod authn;
pub mod hash;
pub mod key;
pub mod layer;
pub mod memory;
pub mod redis;
pub mod store;

pub use admin::{AdminError, KeyAdmin, TenantUpdate};
pub use authn::{AuthError, Authenticator, Principal, presented_key};
pub use hash::{KeyHash, Pepper, PepperError, hash_key};
pub use key::{KEY_PREFIX, KeyFormatError, KeyId, NewKey, PresentedKey, generate, parse};
pub use layer::{Auth, AuthLayer};
pub use memory::MemoryStore;
pub use redis::{RedisSettings, RedisStore};
pub use store::{
    BoxFuture, KeyEntry, KeyRecord, KeyStore, StoreError, StoreHealth, Tenant, TenantSettings,
};
