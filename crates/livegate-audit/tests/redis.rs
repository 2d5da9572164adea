//! The Redis sink against a private `redis-server`.

#[path = "../../livegate-auth/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::Server;
use livegate_audit::{Audit, AuditRedis, AuditSettings, LookupError, SinkKind};
use livegate_core::exchange::{ExchangeRecord, ExchangeSink, Outcome, UpstreamFacts};
use livegate_redis::Backend;
use tokio::time::Instant;

fn redis(server: &Server) -> AuditRedis {
    let client = redis::Client::open(server.url()).unwrap();
    AuditRedis {
        backend: Backend::single(client, Duration::from_millis(500)).unwrap(),
        // A loaded 2-core test machine: keep the bound, not the 50 ms.
        command_timeout: Duration::from_millis(500),
    }
}

fn settings(stream_key: &str, stream_max_len: u64) -> AuditSettings {
    AuditSettings {
        sink: SinkKind::Redis.into(),
        stream_key: stream_key.into(),
        stream_max_len,
        capacity: 1000,
        instance_id: "gw-redis".into(),
        ..AuditSettings::default()
    }
}

/// A finished request's record, as the exchange layer emits it for a
/// request that did not pass the audit layer (it takes a free place).
fn record(i: usize, transaction_id: Option<String>) -> ExchangeRecord {
    ExchangeRecord {
        request_id: format!("r{i}"),
        started_at: SystemTime::now(),
        principal: None,
        image: None,
        upstream: Some(UpstreamFacts {
            status: Some(200),
            transaction_id,
            score: Some(0.5),
            error_code: None,
            latency: Duration::from_millis(2),
            ..UpstreamFacts::default()
        }),
        error: None,
        cause: None,
        status: Some(200),
        outcome: Outcome::Forwarded,
        total: Duration::from_millis(3),
        trace_id: None,
        reserved: false,
        protection: None,
    }
}

fn emit(sink: &Arc<dyn ExchangeSink>, range: std::ops::Range<usize>) {
    for i in range {
        sink.emit(record(i, Some(format!("tx-{i}"))));
    }
}

async fn conn(server: &Server) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The `seq` of every entry of the stream, oldest first.
async fn stream_seqs(server: &Server, key: &str) -> Vec<u64> {
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(&mut conn(server).await)
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| {
            assert_eq!(fields[0], "record");
            let v: serde_json::Value = serde_json::from_str(&fields[1]).unwrap();
            v["seq"].as_u64().unwrap()
        })
        .collect()
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[tokio::test]
async fn records_land_in_the_stream_and_are_found_by_transaction_id() {
    const N: usize = 300;
    // Small stream nodes, so `MAXLEN ~` trims close to the bound.
    let server = Server::start(&["--stream-node-max-entries", "10"]);
    let audit = Audit::start(settings("audit:t1", 50), Some(redis(&server))).unwrap();
    let sink = audit.sink();
    emit(&sink, 0..N);
    // A transactionId that may not become a key, and none at all.
    sink.emit(record(N, Some("bad tx!".into())));
    sink.emit(record(N + 1, None));
    assert!(audit.flush(deadline()).await);

    let mut c = conn(&server).await;
    let len: u64 = redis::cmd("XLEN")
        .arg("audit:t1")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!((50..=60).contains(&len), "XLEN {len}");
    let seqs = stream_seqs(&server, "audit:t1").await;
    assert_eq!(*seqs.last().unwrap(), N as u64 + 2);
    let first = seqs[0];
    assert_eq!(seqs, (first..=N as u64 + 2).collect::<Vec<_>>());

    // Lookup keys outlive the stream's trimming, with their TTL.
    let line = audit.lookup("tx-0").await.unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (v["seq"].as_u64(), v["requestId"].as_str()),
        (Some(1), Some("r0"))
    );
    assert_eq!(v["instanceId"], "gw-redis");
    let line = audit.lookup("tx-299").await.unwrap().unwrap();
    assert!(line.contains(r#""transactionId":"tx-299""#), "{line}");
    let ttl: i64 = redis::cmd("TTL")
        .arg("audit:t1:tx:tx-299")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 29 * 24 * 3600, "TTL {ttl}");
    assert_eq!(audit.lookup("tx-unknown").await.unwrap(), None);
    for bad in ["bad tx!", "", "a*", &"a".repeat(129)] {
        assert_eq!(audit.lookup(bad).await.unwrap(), None, "{bad:?}");
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("audit:t1:tx:*")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(keys.len(), N);

    let stats = audit.stats();
    assert_eq!(stats.written_total, N as u64 + 2);
    assert_eq!((stats.unwritten_total, stats.write_errors_total), (0, 0));
}

#[tokio::test]
async fn a_killed_redis_delays_records_but_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // Every write on disk before its answer, so a kill loses nothing of
    // what was acknowledged.
    let mut server = Server::start(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        data,
    ]);
    let audit = Audit::start(settings("audit:t2", 1_000_000), Some(redis(&server))).unwrap();
    let sink = audit.sink();
    emit(&sink, 0..10);
    assert!(audit.flush(deadline()).await);

    server.kill();
    emit(&sink, 10..30);
    let waited = Instant::now() + Duration::from_secs(60);
    while !audit.stats().failing {
        assert!(Instant::now() < waited, "writes never failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = audit.stats();
    assert!(stats.write_errors_total >= 1);
    assert_eq!((stats.queued, stats.written_total), (20, 10));
    assert!(matches!(
        audit.lookup("tx-0").await,
        Err(LookupError::Unavailable(_))
    ));

    server.restart();
    assert!(audit.flush(deadline()).await);
    assert_eq!(
        stream_seqs(&server, "audit:t2").await,
        (1..=30).collect::<Vec<u64>>()
    );
    let stats = audit.stats();
    assert!(!stats.failing);
    assert_eq!((stats.written_total, stats.unwritten_total), (30, 0));
    assert!(audit.lookup("tx-29").await.unwrap().is_some());
}

#[tokio::test]
async fn the_file_and_stdout_sinks_have_no_lookup() {
    let audit = Audit::start(AuditSettings::default(), None).unwrap();
    assert_eq!(audit.lookup("tx-1").await, Err(LookupError::Unsupported));
}
