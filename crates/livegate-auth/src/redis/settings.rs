use std::time::Duration;

/// How a [`RedisStore`](super::RedisStore) talks to Redis and caches.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Bound on every Redis command (default 50 ms): a sick Redis must never
    /// stall requests.
    pub command_timeout: Duration,
    /// Bound on each command of an admin write (default 2 s): an operator
    /// waits for it, and a write that timed out may still have landed.
    pub admin_timeout: Duration,
    /// Bound on establishing a connection (default 1 s). The first command
    /// after a disconnect still gives up after `command_timeout`.
    pub connect_timeout: Duration,
    /// Prefix of every Redis key and of the invalidation channel (default
    /// `livegate`).
    pub prefix: String,
    /// How long a cached lookup is used before it is read again: the bound
    /// on how late a revoke or disable is honoured on a replica that missed
    /// the invalidation. At most 1 s (larger values are capped); the
    /// default, 900 ms, leaves room inside the promised 1 s for the refresh
    /// read itself, so a client polling after a revoke sees it in < 1 s.
    pub cache_ttl: Duration,
    /// How long past its last successful read a cached key keeps being
    /// served while Redis is unreachable (default 5 min).
    pub stale_limit: Duration,
    /// Subscribe to the invalidation channel (default `true`). Off, changes
    /// are still honoured within `cache_ttl`; tests turn it off to prove it.
    pub invalidation: bool,
}

/// The upper bound on [`RedisSettings::cache_ttl`].
pub(super) const MAX_CACHE_TTL: Duration = Duration::from_secs(1);

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            command_timeout: Duration::from_millis(50),
            admin_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            prefix: "livegate".to_owned(),
            cache_ttl: Duration::from_millis(900),
            stale_limit: Duration::from_secs(300),
            invalidation: true,
        }
    }
}
