//! Redis connections shared by livegate's Redis-backed crates (the key
//! store in `livegate-auth`, the limiter in `livegate-ratelimit`).
//!
//! Owns [`Backend`], one connection type for a single Redis server (a
//! lazily connecting, reconnecting `ConnectionManager`) and a Redis Cluster
//! (a cluster client connected on first use); [`Conn`], the cheap clone a
//! command runs on; [`Backend::run`], which bounds one command (connecting
//! included) by a timeout; and [`describe`], the short description of a
//! Redis error that never contains the URL or its password; and the
//! `[redis]` section ([`RedisSettings`], with the one [`FailMode`] every
//! Redis-backed part follows). Does not own key layouts, scripts, or how a
//! caller reports a failure.

mod settings;

pub use settings::{FailMode, RedisSettings};

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// Where commands go. Both kinds reconnect by themselves.
pub enum Backend {
    /// One server, behind a reconnecting connection manager.
    Single(ConnectionManager),
    /// Connected on first use, so a caller can be built while the cluster
    /// is down (the cluster client has no lazy constructor).
    Cluster(Box<LazyCluster>),
}

/// A cluster client and its connection, made on first use.
pub struct LazyCluster {
    client: ClusterClient,
    conn: tokio::sync::Mutex<Option<ClusterConnection>>,
}

impl Backend {
    /// A single server reached through `client`. Connects lazily; must be
    /// called within a Tokio runtime. Each connection attempt is bounded by
    /// `connect_timeout`.
    pub fn single(client: Client, connect_timeout: Duration) -> RedisResult<Self> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        ConnectionManager::new_lazy_with_config(client, config).map(Self::Single)
    }

    /// A Redis Cluster reached through any of `nodes`. Connects on first
    /// use; each connection attempt is bounded by `connect_timeout`.
    pub fn cluster(nodes: &[&str], connect_timeout: Duration) -> RedisResult<Self> {
        let client = ClusterClient::builder(nodes.to_vec())
            .connection_timeout(connect_timeout)
            .retries(1)
            .build()?;
        Ok(Self::Cluster(Box::new(LazyCluster {
            client,
            conn: tokio::sync::Mutex::new(None),
        })))
    }

    /// From a configured URL: one `redis://` / `rediss://` URL is a single
    /// server; several, comma-separated, are the nodes of a Cluster.
    pub fn from_url(url: &str, connect_timeout: Duration) -> RedisResult<Self> {
        let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
        if nodes.len() > 1 {
            Self::cluster(&nodes, connect_timeout)
        } else {
            Self::single(Client::open(url)?, connect_timeout)
        }
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// A connection for one command: a clone of the shared one, connecting
    /// the cluster first if it is not yet.
    pub async fn connection(&self) -> RedisResult<Conn> {
        match self {
            Self::Single(c) => Ok(Conn::Single(c.clone())),
            Self::Cluster(lazy) => {
                let mut conn = lazy.conn.lock().await;
                if let Some(c) = &*conn {
                    return Ok(Conn::Cluster(c.clone()));
                }
                let c = lazy.client.get_async_connection().await?;
                *conn = Some(c.clone());
                Ok(Conn::Cluster(c))
            }
        }
    }

    /// Runs one command (or pipeline, or script invocation) on a
    /// connection, the whole of it (connecting included) within `timeout`.
    pub async fn run<T, F, Fut>(&self, timeout: Duration, f: F) -> Result<T, Failure>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let work = async { f(self.connection().await?).await };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::TimedOut(timeout)),
        }
    }
}

impl Backend {
    /// [`Backend::run`], but a command that failed because its connection
    /// was dead (Redis restarted, the pooled connection was cut) runs once
    /// more on a fresh connection, within the same `timeout`: after a
    /// restart the first command meets the old connection, and should not
    /// be the one that fails. Only for commands that may safely run twice
    /// (reads, or writes made idempotent by their caller): a connection
    /// that drops while a command runs leaves unknown whether it ran.
    pub async fn run_retrying<T, F, Fut>(&self, timeout: Duration, mut f: F) -> Result<T, Failure>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let work = async {
            match f(self.connection().await?).await {
                Err(e) if is_dead_connection(&e) => f(self.connection().await?).await,
                other => other,
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::TimedOut(timeout)),
        }
    }
}

/// The error of a command sent on a connection that was already dead.
pub fn is_dead_connection(e: &RedisError) -> bool {
    e.is_connection_dropped() || e.is_io_error() || e.is_unrecoverable_error()
}

/// Why [`Backend::run`] failed.
#[derive(Debug)]
pub enum Failure {
    /// Redis, or the connection to it, answered with an error.
    Redis(RedisError),
    /// The timeout passed first.
    TimedOut(Duration),
}

impl Failure {
    /// A short description, never the URL or a password: [`describe`] for
    /// an error, `"<what> timed out after <n> ms"` for a timeout.
    pub fn describe(&self, what: &str) -> String {
        match self {
            Self::Redis(e) => describe(e),
            Self::TimedOut(t) => format!("{what} timed out after {} ms", t.as_millis()),
        }
    }
}

/// A short description of a Redis error: never the URL, never a password.
pub fn describe(e: &RedisError) -> String {
    if e.is_timeout() {
        "redis timed out".to_owned()
    } else if e.is_connection_refusal() {
        "redis refused the connection".to_owned()
    } else if e.is_connection_dropped() || e.is_io_error() {
        "redis connection lost".to_owned()
    } else if let Some(code) = e.code() {
        format!("redis error {code}")
    } else {
        format!("redis error ({:?})", e.kind())
    }
}

/// A cheap clone of a connection, for one command.
#[derive(Clone)]
pub enum Conn {
    /// On a single server.
    Single(ConnectionManager),
    /// On a cluster (routed by slot).
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_url_is_described_without_the_url() {
        let e = Client::open("redis://user:hunter2@[bad").unwrap_err();
        let why = describe(&e);
        assert!(!why.contains("hunter2") && !why.contains("bad"), "{why}");
    }

    #[test]
    fn a_timeout_says_what_timed_out() {
        let f = Failure::TimedOut(Duration::from_millis(25));
        assert_eq!(f.describe("redis"), "redis timed out after 25 ms");
    }
}
