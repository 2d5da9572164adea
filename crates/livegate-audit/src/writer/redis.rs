//! The Redis stream output, as a task: each batch in one `MULTI`/`EXEC`.

use std::sync::Arc;
use std::time::Duration;

use livegate_redis::{Backend, Failure};

use super::{Line, Report, Source, more};
use crate::state::Backoff;

/// Records per transaction.
const MAX_BATCH: usize = 256;

pub(crate) struct RedisOutput {
    pub(crate) backend: Backend,
    pub(crate) timeout: Duration,
    pub(crate) stream_key: String,
    pub(crate) max_len: u64,
    pub(crate) ttl_secs: u64,
}

impl RedisOutput {
    pub(crate) fn lookup_key(&self, transaction_id: &str) -> String {
        format!("{}:tx:{transaction_id}", self.stream_key)
    }

    /// One transaction per batch: a record's stream entry and its lookup
    /// key are written together or not at all. When `EXEC`'s answer is
    /// lost (a timeout after Redis applied it) the retry writes the batch
    /// again: the trail is at least once, and the repeated `seq`s show it.
    async fn write(&self, lines: &[&Line]) -> Result<(), Failure> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for line in lines {
            pipe.cmd("XADD")
                .arg(&self.stream_key)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.max_len)
                .arg("*")
                .arg("record")
                .arg(&line.json)
                .ignore();
            if let Some(tx) = &line.transaction_id {
                pipe.cmd("SET")
                    .arg(self.lookup_key(tx))
                    .arg(&line.json)
                    .arg("EX")
                    .arg(self.ttl_secs)
                    .ignore();
            }
        }
        let pipe = &pipe;
        self.backend
            .run(self.timeout, move |mut conn| async move {
                pipe.query_async::<()>(&mut conn).await
            })
            .await
    }

    pub(crate) async fn get(&self, transaction_id: &str) -> Result<Option<String>, Failure> {
        let key = self.lookup_key(transaction_id);
        self.backend
            .run(self.timeout, move |mut conn| async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<String>>(&mut conn)
                    .await
            })
            .await
    }
}

/// The writer task's loop; ends when every sender is gone and the queue
/// is written.
pub(crate) async fn run(mut rx: Source, report: Report, out: Arc<RedisOutput>) {
    while let Some(first) = rx.recv().await {
        let batches = more(first, &mut rx, MAX_BATCH);
        let lines: Vec<&Line> = batches.iter().flat_map(|b| b.iter()).collect();
        let mut backoff = Backoff::new();
        while let Err(e) = out.write(&lines).await {
            report.failed(&e.describe("audit write to redis"));
            tokio::time::sleep(backoff.next()).await;
        }
        report.written(lines.len());
    }
}
