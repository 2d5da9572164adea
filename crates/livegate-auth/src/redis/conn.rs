//! One connection type for a single Redis server and a Redis Cluster.

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// Where commands go. Both kinds reconnect by themselves.
pub(super) enum Backend {
    Single(ConnectionManager),
    /// Connected on first use, so a store can be built while the cluster
    /// is down (the cluster client has no lazy constructor).
    Cluster(Box<LazyCluster>),
}

pub(super) struct LazyCluster {
    pub(super) client: ClusterClient,
    pub(super) conn: tokio::sync::Mutex<Option<ClusterConnection>>,
}

impl Backend {
    pub(super) async fn connection(&self) -> RedisResult<Conn> {
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
}

/// A cheap clone of a connection, for one command.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
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
