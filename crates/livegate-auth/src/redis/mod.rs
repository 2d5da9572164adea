//! The shared key store: tenants and key records in Redis, behind a
//! per-replica cache, so every replica sees the same keys and the request
//! path rarely leaves the process.
//!
//! Owns [`RedisStore`] (implementing [`KeyStore`](crate::KeyStore) for the
//! request path and [`KeyAdmin`](crate::KeyAdmin) for the admin API), its
//! [`RedisSettings`], the key layout below, and the cache with its
//! invalidation. Does not own configuration loading, the rate limiter's use
//! of Redis, or what the gateway answers when the store fails (a
//! [`StoreError`](crate::StoreError) becomes 503, never 401).
//!
//! # Key layout
//!
//! `P` is the prefix (default `livegate`). Everything a tenant owns shares
//! one hash tag, `{t:<tenant>}`, so it lives in one Redis Cluster slot and a
//! multi-key write of a tenant is one atomic Lua script:
//!
//! | key | type | value |
//! |---|---|---|
//! | `P:{t:<tenant>}:tenant` | string | the [`Tenant`](crate::Tenant) as JSON |
//! | `P:{t:<tenant>}:key:<kid>` | string | the [`KeyRecord`](crate::KeyRecord) as JSON (hash only, never a secret) |
//! | `P:{t:<tenant>}:keys` | set | the tenant's kids, for listing |
//! | `P:kid:<kid>` | string | the kid's tenant id (the index a lookup starts from) |
//! | `P:tenants` | set | every tenant id, for listing |
//! | `P:invalidate` | pub/sub channel | `k:<kid>` or `t:<tenant>`: what changed |
//!
//! The two index keys live in other slots, so they are written *before* the
//! records they point to, in their own command, and readers ignore an index
//! entry whose record is missing: a crash between the two writes leaves a
//! dangling pointer, never a half-written credential. Everything that
//! carries a credential's state (a key record, its tenant, a rotation's two
//! records) is written atomically in the tenant's slot (`SET`, or a Lua
//! script with compare-and-set on the record read before, retried on a
//! conflicting concurrent write).
//!
//! A rotation keeps the old key's tenant: the new record is stored under it
//! (its `tenant_id` is set to the old key's), atomically with the old key's
//! shortened expiry.
//!
//! # Consistency: a write is honoured everywhere within 1 s
//!
//! Each replica caches lookups (the key record with its tenant, or "no such
//! key") and stamps each entry with the instant its Redis read *started*.
//! An entry older than the cache TTL (default 900 ms, at most 1 s,
//! enforced) is re-read before it is used. Because the stamp is taken before the read, any write
//! that completed before an entry's read is seen by it, and any later write
//! is seen by the first lookup after that entry's TTL: **a revoke, key
//! change or tenant disable is honoured by every replica within the TTL
//! after the write returns**, whatever happens to pub/sub. Pub/sub only
//! makes it faster: every write publishes what changed on `P:invalidate`,
//! every replica's background subscriber drops the matching entries at
//! once, and drops its whole cache whenever it (re)subscribes, since it may
//! have missed messages while disconnected.
//!
//! The exception is a replica that cannot reach Redis: it keeps serving the
//! entries it has verified for at most the stale limit (default 5 min) past
//! their last successful read, so a Redis outage does not take down
//! traffic of known keys; a write made meanwhile through another replica
//! (one that can still reach Redis) reaches it once it can read again.
//! Anything not in its cache fails with
//! [`StoreError::Unavailable`](crate::StoreError::Unavailable). After a
//! failure the store does not try Redis again for 100 ms, so a dead Redis
//! costs one request per 100 ms a command timeout instead of every request;
//! reconnection is automatic.
//!
//! # Last use
//!
//! [`KeyStore::touch`](crate::KeyStore::touch) sets a key record's
//! `last_used_at` with one Lua script on that record alone (only if the stored
//! time is older; the rest of the record's text is kept as it is). It
//! publishes no invalidation and drops no cache entry: the field is
//! informational, so replicas pick it up at their next refresh, and the
//! authenticator's once-a-minute limit keeps the writes from churning caches.
//! Like every write, it makes a concurrent admin compare-and-set retry.
//!
//! # Round trips per lookup
//!
//! - cache hit younger than the TTL: none;
//! - refresh of a kid already cached (its tenant known): one `MGET` of the
//!   key record and its tenant (same slot);
//! - a kid not seen before: two, `GET P:kid:<kid>` then that `MGET`. An
//!   unknown kid costs one and is then cached as absent for the TTL.
//!
//! Every command runs under the command timeout (default 50 ms); a timeout
//! or connection error is [`StoreError::Unavailable`](crate::StoreError).
//! Errors and health details never contain the URL or its password.
//!
//! [`RedisStore::new`] talks to one server (reconnecting
//! `ConnectionManager`), [`RedisStore::new_cluster`] to a Redis Cluster
//! (commands routed by slot; pub/sub is cluster-wide). `rediss://` URLs use
//! rustls (ring provider; system root certificates).

mod admin;
mod cache;
mod layout;
mod settings;
mod store;

pub use settings::RedisSettings;
pub use store::RedisStore;
