//! The layer, the sink and the file writer together, on real files (and a
//! FIFO for a sink that blocks).

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use livegate_audit::{Audit, AuditSettings, AuditUnavailable, KEYS, SinkKind};
use livegate_core::exchange::{Exchange, ExchangeLayer, UpstreamFacts};
use livegate_core::{REQUEST_ID_HEADER, SystemClock};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

fn settings(path: &Path, capacity: usize, max_wait: Duration) -> AuditSettings {
    AuditSettings {
        sink: SinkKind::File.into(),
        path: Some(path.to_owned()),
        capacity,
        max_wait,
        instance_id: "gw-test".into(),
        ..AuditSettings::default()
    }
}

/// The liveness route's shape: exchange layer, audit layer, then the
/// rest (here a handler that counts its calls and records a vendor
/// answer).
fn stack(
    audit: &Audit,
    calls: &Arc<AtomicUsize>,
) -> impl Service<Request<Bytes>, Response = Response<Bytes>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ use<> {
    let calls = calls.clone();
    let handler = service_fn(move |req: Request<Bytes>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let x = Exchange::of(&req).expect("exchange layer above");
            let rid = livegate_core::request_id(req.headers()).to_owned();
            x.set_principal("acme", "abc123def456");
            x.set_upstream(UpstreamFacts {
                status: Some(200),
                transaction_id: Some(format!("tx-{rid}")),
                score: Some(0.9),
                error_code: None,
                latency: Duration::from_millis(1),
                ..UpstreamFacts::default()
            });
            // Let other requests interleave.
            tokio::task::yield_now().await;
            Ok::<_, AuditUnavailable>(Response::new(Bytes::from_static(b"{}")))
        }
    });
    ExchangeLayer::new(audit.sink(), Arc::new(SystemClock)).layer(audit.layer().layer(handler))
}

fn req(i: usize) -> Request<Bytes> {
    Request::builder()
        .header(REQUEST_ID_HEADER, format!("r{i}"))
        .body(Bytes::new())
        .unwrap()
}

fn parse(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn seqs(records: &[serde_json::Value]) -> Vec<u64> {
    records.iter().map(|r| r["seq"].as_u64().unwrap()).collect()
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_all_written_with_contiguous_seqs() {
    const N: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    // Far fewer places than requests: most wait for one.
    let audit = Audit::start(settings(&path, 8, Duration::from_secs(60)), None).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = stack(&audit, &calls);
    let tasks: Vec<_> = (0..N)
        .map(|i| tokio::spawn(svc.clone().oneshot(req(i))))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status(), 200);
    }
    assert!(audit.flush(deadline()).await);

    let records = parse(&read_lines(&path));
    assert_eq!(records.len(), N);
    assert_eq!(seqs(&records), (1..=N as u64).collect::<Vec<_>>());
    let mut rids: Vec<String> = records
        .iter()
        .map(|r| r["requestId"].as_str().unwrap().to_owned())
        .collect();
    rids.sort();
    let mut want: Vec<String> = (0..N).map(|i| format!("r{i}")).collect();
    want.sort();
    assert_eq!(rids, want);
    for r in &records {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut all = KEYS.to_vec();
        all.sort_unstable();
        assert_eq!(keys, all);
        assert_eq!(r["instanceId"], "gw-test");
        assert_eq!(r["outcome"], "forwarded");
        assert_eq!(
            r["transactionId"].as_str().unwrap(),
            format!("tx-{}", r["requestId"].as_str().unwrap())
        );
    }
    let stats = audit.stats();
    assert_eq!(stats.written_total, N as u64);
    assert_eq!(stats.queued, 0);
    assert_eq!(stats.places_free, 8);
    assert_eq!(
        (
            stats.refused_total,
            stats.unwritten_total,
            stats.write_errors_total
        ),
        (0, 0, 0)
    );
    assert_eq!(calls.load(Ordering::SeqCst), N);
}

/// Lines of the live file and its rotated files, oldest first; and how
/// many rotated files there are.
fn rotated_lines(path: &Path) -> (Vec<String>, usize) {
    let numbered = |i: usize| PathBuf::from(format!("{}.{i}", path.display()));
    let mut n = 0;
    while numbered(n + 1).exists() {
        n += 1;
    }
    let mut lines = Vec::new();
    for i in (1..=n).rev() {
        let file = read_lines(&numbered(i));
        assert!(!file.is_empty(), "rotated file {i} is empty");
        lines.extend(file);
    }
    lines.extend(read_lines(path));
    (lines, n)
}

async fn write_n(audit: &Audit, n: usize) {
    let svc = stack(audit, &Arc::new(AtomicUsize::new(0)));
    for i in 0..n {
        assert_eq!(svc.clone().oneshot(req(i)).await.unwrap().status(), 200);
    }
    assert!(audit.flush(deadline()).await);
}

#[tokio::test]
async fn rotation_splits_the_trail_in_order_and_keeps_max_files() {
    const N: usize = 60;
    // A line here is about 390 bytes: four to a file.
    let max_file_bytes = 1800;

    // N records written through a trail rotating at max_file_bytes and
    // keeping max_files: the lines of every file left, and how many rotated.
    let run = |max_files: u32| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::start(
            AuditSettings {
                max_file_bytes,
                max_files,
                ..settings(&path, 16, Duration::from_secs(60))
            },
            None,
        )
        .unwrap();
        write_n(&audit, N).await;
        let (lines, rotated) = rotated_lines(&path);
        (dir, path, lines, rotated)
    };

    // Enough files kept: the union is every line, in order.
    let (_dir, path, lines, rotated) = run(1000).await;
    assert!(rotated >= 10, "{rotated} rotated files");
    assert_eq!(seqs(&parse(&lines)), (1..=N as u64).collect::<Vec<_>>());
    for i in 1..=rotated {
        let len = std::fs::metadata(format!("{}.{i}", path.display()))
            .unwrap()
            .len();
        assert!(len <= max_file_bytes, "file {i}: {len} bytes");
    }

    // Three kept: the newest lines, contiguous up to the last.
    let (_dir, path, lines, rotated) = run(3).await;
    assert_eq!(rotated, 3);
    assert!(!Path::new(&format!("{}.4", path.display())).exists());
    let got = seqs(&parse(&lines));
    let first = got[0];
    assert!(first > 1);
    assert_eq!(got, (first..=N as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_layer_refuses_without_calling_the_inner_service() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Audit::start(
        settings(
            &dir.path().join("audit.jsonl"),
            1,
            Duration::from_millis(50),
        ),
        None,
    )
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    // No exchange layer: the request holds its place until it ends.
    let svc = audit.layer().layer(service_fn({
        let (calls, release) = (calls.clone(), release.clone());
        move |_req: Request<()>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let release = release.clone();
            async move {
                release.notified().await;
                Ok::<_, AuditUnavailable>("served")
            }
        }
    }));
    let first = tokio::spawn(svc.clone().oneshot(Request::new(())));
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let err = svc.clone().oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(err.retry_after, Duration::from_secs(1));
    assert_eq!(livegate_core::ToErrorKind::error_kind(&err).code(), 50305);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "refused before the inner call"
    );
    release.notify_one();
    assert_eq!(first.await.unwrap().unwrap(), "served");
    // The place is back.
    let third = tokio::spawn(svc.clone().oneshot(Request::new(())));
    while calls.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    assert_eq!(third.await.unwrap().unwrap(), "served");
    let stats = audit.stats();
    assert_eq!((stats.waits_total, stats.refused_total), (1, 1));
    assert_eq!(stats.places_free, 1);
}

#[tokio::test]
async fn a_stuck_sink_refuses_after_capacity_and_loses_nothing() {
    const C: usize = 4;
    let max_wait = Duration::from_millis(300);
    let dir = tempfile::tempdir().unwrap();
    // Opening a FIFO for writing blocks until a reader opens it: the
    // writer thread is stuck in its first write until the test reads.
    let path = dir.path().join("audit.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    let audit = Audit::start(settings(&path, C, max_wait), None).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = stack(&audit, &calls);

    // The first C requests are admitted and answered; their records wait.
    for i in 0..C {
        assert_eq!(svc.clone().oneshot(req(i)).await.unwrap().status(), 200);
    }
    let stats = audit.stats();
    assert_eq!((stats.queued, stats.places_free), (C as u64, 0));
    assert_eq!(stats.written_total, 0);

    // The next waits for a place, then is refused before the handler.
    let started = Instant::now();
    let res = svc.clone().oneshot(req(C)).await.unwrap();
    assert!(started.elapsed() >= max_wait);
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(body["errorCode"], 50305);
    assert_eq!(calls.load(Ordering::SeqCst), C);
    let stats = audit.stats();
    assert_eq!((stats.waits_total, stats.refused_total), (1, 1));
    // The refused request's own record found no place: counted, not queued.
    assert_eq!((stats.unwritten_total, stats.queued), (1, C as u64));
    // Blocked is not failing: nothing returned an error.
    assert!(!stats.failing);
    assert!(
        !audit
            .flush(Instant::now() + Duration::from_millis(50))
            .await
    );

    // Unblock: read the FIFO. Every admitted record arrives, then the
    // next request's too.
    let reader = std::thread::spawn({
        let path = path.clone();
        move || {
            let lines = BufReader::new(std::fs::File::open(path).unwrap()).lines();
            lines.take(C + 1).map(Result::unwrap).collect::<Vec<_>>()
        }
    });
    assert!(audit.flush(deadline()).await);
    assert_eq!(audit.stats().places_free, C);
    assert_eq!(svc.clone().oneshot(req(C + 1)).await.unwrap().status(), 200);
    assert!(audit.flush(deadline()).await);
    let records = parse(&reader.join().unwrap());
    assert_eq!(seqs(&records), (1..=C as u64 + 1).collect::<Vec<_>>());
    let rids: Vec<&str> = records
        .iter()
        .map(|r| r["requestId"].as_str().unwrap())
        .collect();
    assert_eq!(rids, ["r0", "r1", "r2", "r3", "r5"]);
    let stats = audit.stats();
    assert_eq!(stats.written_total, C as u64 + 1);
    assert_eq!(
        (
            stats.refused_total,
            stats.unwritten_total,
            stats.write_errors_total
        ),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn a_waiting_request_is_admitted_when_the_writer_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    let audit = Audit::start(settings(&path, 1, Duration::from_secs(60)), None).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = stack(&audit, &calls);

    // One place, held by the first record while the writer is stuck.
    assert_eq!(svc.clone().oneshot(req(0)).await.unwrap().status(), 200);
    let second = tokio::spawn(svc.clone().oneshot(req(1)));
    while audit.stats().waits_total == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "waiting, not called");

    let reader = std::thread::spawn(move || {
        let lines = BufReader::new(std::fs::File::open(path).unwrap()).lines();
        lines.take(2).map(Result::unwrap).collect::<Vec<_>>()
    });
    assert_eq!(second.await.unwrap().unwrap().status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(audit.flush(deadline()).await);
    let records = parse(&reader.join().unwrap());
    assert_eq!(seqs(&records), [1, 2]);
    assert_eq!(records[1]["requestId"], "r1");
    let stats = audit.stats();
    assert_eq!((stats.waits_total, stats.refused_total), (1, 0));
}
