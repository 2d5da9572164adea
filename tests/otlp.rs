//! Operations over OTLP end to end: the gateway process exports its metrics
//! and writes its audit trail to a real OTLP receiver (the telemetry
//! testkit's, over real sockets), and keeps its guarantees when the
//! receiver is gone.

mod common;

use std::time::Duration;

use common::*;
use livegate_stub::StubConfig;
use livegate_telemetry::testkit::{OtlpReceiver, ReceivedLog, ReceivedPoint};

const VENDOR_KEY: &str = "vendor-key-otlp-0123456789";

/// How long a test waits for an export to arrive (exports run every
/// 200 ms here; the bound is only for a broken build).
const ARRIVAL: Duration = Duration::from_secs(30);

/// The gateway in front of an in-process simulator, tenant `acme`.
async fn gateway(extra: &str, env: &[(&str, &str)]) -> (Proc, livegate_stub::StubHandle, TestKey) {
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY).recording())
        .await
        .unwrap();
    let acme = make_key();
    let tenants = tenant_block("acme", false, &[(&acme, None, false)]);
    let cfg = format!(
        "{}\n{extra}",
        config_with_vendor(&stub.base_url(), VENDOR_KEY, &tenants)
    );
    (Proc::serve(Some(&cfg), env), stub, acme)
}

fn has(p: &ReceivedPoint, metric: &str, attrs: &[(&str, &str)]) -> bool {
    p.metric == metric && attrs.iter().all(|(k, v)| p.attr(k) == Some(v))
}

/// The latest point of a series (cumulative points repeat the total).
fn last<'a>(
    points: &'a [ReceivedPoint],
    metric: &str,
    attrs: &[(&str, &str)],
) -> Option<&'a ReceivedPoint> {
    points.iter().rev().find(|p| has(p, metric, attrs))
}

/// Traffic, then every kind of instrument found at the receiver with its
/// attributes: request counters and the score histogram by tenant, the
/// HTTP server duration by route, a gauge of the parts' state.
async fn metrics_arrive(transport: &'static str, temporality: &'static str) {
    let rx = OtlpReceiver::start().unwrap();
    let endpoint = match transport {
        "grpc" => rx.grpc_endpoint(),
        _ => format!("{}/v1/metrics", rx.http_endpoint()),
    };
    let protocol = if transport == "grpc" {
        "grpc"
    } else {
        "http/protobuf"
    };
    let (gw, _stub, acme) = gateway(
        "",
        &[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", protocol),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                temporality,
            ),
        ],
    )
    .await;
    let url = gw.url("/modules/liveness");
    for _ in 0..3 {
        assert_eq!(post_raw_jpeg(&url, &acme.plaintext).await.status, 200);
    }
    assert_eq!(post_raw_jpeg(&url, "lvg_not_a_key").await.status, 401);
    assert_eq!(send(&gw.url("/readyz"), "GET", &[], "").await.status, 200);

    let forwarded = [
        ("tenant", "acme"),
        ("outcome", "forwarded"),
        ("status", "200"),
    ];
    // Summed over points, so the same check holds for both temporalities.
    let total =
        |points: &[ReceivedPoint], metric: &str, attrs: &[(&str, &str)], count: bool| -> f64 {
            let matching = points.iter().filter(|p| has(p, metric, attrs));
            if temporality == "delta" {
                matching
                    .map(|p| if count { p.count as f64 } else { p.value })
                    .sum()
            } else {
                last(points, metric, attrs)
                    .map_or(0.0, |p| if count { p.count as f64 } else { p.value })
            }
        };
    let points = rx
        .wait_for_points(
            |p| {
                total(p, "livegate.requests", &forwarded, false) == 3.0
                    && total(p, "livegate.liveness.score", &[("tenant", "acme")], true) == 3.0
                    && total(
                        p,
                        "http.server.request.duration",
                        &[
                            ("http.route", "/modules/liveness"),
                            ("http.response.status_code", "200"),
                            ("http.request.method", "POST"),
                        ],
                        true,
                    ) == 3.0
                    && total(
                        p,
                        "http.server.request.duration",
                        &[("http.route", "/readyz")],
                        true,
                    ) == 1.0
                    && total(
                        p,
                        "livegate.requests",
                        &[("tenant", ""), ("status", "401"), ("error_code", "40102")],
                        false,
                    ) == 1.0
            },
            ARRIVAL,
        )
        .await
        .unwrap_or_else(|got| panic!("metrics did not arrive; got {:#?}", names(&got)));

    let requests = last(&points, "livegate.requests", &forwarded).unwrap();
    assert_eq!(requests.kind, "sum");
    assert_eq!(requests.temporality, temporality);
    assert_eq!(requests.transport, transport);
    assert_eq!(requests.service_name, "livegate");
    let score = last(&points, "livegate.liveness.score", &[("tenant", "acme")]).unwrap();
    assert_eq!(score.kind, "histogram");
    let buckets: Vec<f64> = (1..=20).map(|i| f64::from(i) * 5.0).collect();
    assert_eq!(score.bounds, buckets, "the /metrics buckets");
    let http = last(
        &points,
        "http.server.request.duration",
        &[("http.route", "/modules/liveness")],
    )
    .unwrap();
    assert_eq!(http.unit, "s");
    let duration = last(&points, "livegate.request.duration", &[("tenant", "acme")]).unwrap();
    assert_eq!((duration.kind, duration.unit.as_str()), ("histogram", "s"));
    // The parts' state, observed.
    let closed = last(
        &points,
        "livegate.vendor_circuit_state",
        &[("state", "closed")],
    )
    .unwrap();
    assert_eq!((closed.kind, closed.value), ("gauge", 1.0));
    assert!(points.iter().any(|p| p.metric == "livegate.audit.capacity"));
    // Nothing renamed on /metrics, and the HTTP duration there too.
    let scrape = send(&gw.ops_url("/metrics"), "GET", &[], "").await;
    let text = String::from_utf8(scrape.body.to_vec()).unwrap();
    assert!(text.contains(r#"livegate_requests_total{tenant="acme",outcome="forwarded",status="200",error_code=""} 3"#), "{text}");
    assert!(text.contains(r#"http_server_request_duration_seconds_count{http_route="/modules/liveness",http_request_method="POST",http_response_status_code="200"} 3"#), "{text}");
}

fn names(points: &[ReceivedPoint]) -> Vec<String> {
    let mut n: Vec<String> = points
        .iter()
        .map(|p| format!("{} {:?} {} {}", p.metric, p.attributes, p.value, p.count))
        .collect();
    n.dedup();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_arrive_over_otlp_grpc_cumulative() {
    metrics_arrive("grpc", "cumulative").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_arrive_over_otlp_http_delta() {
    metrics_arrive("http", "delta").await;
}

/// The peak resident set of a process, KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `n` liveness requests, 8 at a time; every one must be answered 200.
async fn traffic(url: &str, key: &str, n: usize) {
    let mut left = n;
    while left > 0 {
        let k = left.min(8);
        let answers = futures_util::future::join_all((0..k).map(|_| post_raw_jpeg(url, key))).await;
        for a in answers {
            assert_eq!(a.status, 200, "the gateway keeps serving");
        }
        left -= k;
    }
}

/// With the collector down (nothing listens at the endpoint), exports fail
/// every 50 ms while traffic runs: requests are all served and the peak
/// memory grows by a bounded amount (no backlog of unsent metrics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_collector_down_the_gateway_serves_in_bounded_memory() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (gw, _stub, acme) = gateway(
        "",
        &[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", closed.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "50"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "200"),
        ],
    )
    .await;
    let url = gw.url("/modules/liveness");
    let pid = gw.child.id();
    // Warm up: connection pools, caches, every series exists.
    traffic(&url, &acme.plaintext, 400).await;
    let warm = peak_rss_kib(pid);
    traffic(&url, &acme.plaintext, 3000).await;
    let first = peak_rss_kib(pid);
    traffic(&url, &acme.plaintext, 3000).await;
    let second = peak_rss_kib(pid);
    eprintln!(
        "peak RSS (KiB): {warm} after warm-up, {first} after 3000 more requests, {second} after 3000 more"
    );
    // Some growth settles (the export runtime's buffers, the allocator);
    // what matters is that it stops: a backlog of unsent metrics would
    // keep growing with every failed export.
    assert!(
        first.saturating_sub(warm) < 16 * 1024,
        "peak RSS grew {} KiB over 3000 requests with the collector down",
        first.saturating_sub(warm)
    );
    assert!(
        second.saturating_sub(first) < 4 * 1024,
        "peak RSS kept growing with the collector down: {first} -> {second} KiB over 3000 more requests"
    );
    let text = String::from_utf8(
        send(&gw.ops_url("/metrics"), "GET", &[], "")
            .await
            .body
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains(r#"livegate_requests_total{tenant="acme",outcome="forwarded",status="200",error_code=""} 6400"#));
}

/// Waits until the audit trail counts `n` records written by every sink.
async fn written(gw: &Proc, n: u64) {
    let want = format!("livegate_audit_records_total {n}\n");
    let deadline = std::time::Instant::now() + ARRIVAL;
    loop {
        let text = String::from_utf8(
            send(&gw.ops_url("/metrics"), "GET", &[], "")
                .await
                .body
                .to_vec(),
        )
        .unwrap();
        if text.contains(&want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not {n} records written:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn seq(l: &ReceivedLog) -> u64 {
    l.attr("seq").unwrap().parse().unwrap()
}

/// The `otlp` audit sink next to the file sink: N requests → exactly N log
/// records at the receiver (body the audit line, fields as attributes,
/// severity by outcome) with contiguous sequence numbers. With the
/// receiver stopped, admitted requests' records wait (their places stay
/// taken) and the next request is refused 503 50305 — no record is lost:
/// once the receiver is back, every admitted record arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otlp_audit_sink_delivers_every_record_or_refuses() {
    let rx = OtlpReceiver::start().unwrap();
    let (grpc, http) = (rx.grpc_endpoint(), rx.http_endpoint());
    let logs_endpoint = format!("{http}/v1/logs");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let extra = format!(
        "[audit]\nsink = [\"file\", \"otlp\"]\npath = \"{}\"\ncapacity = 4\nmax_wait_ms = 300\n",
        file.display()
    );
    let (mut gw, stub, acme) = gateway(
        &extra,
        &[
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", logs_endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ],
    )
    .await;
    let url = gw.url("/modules/liveness");
    let mut ids = Vec::new();
    for i in 0..10 {
        let key = if i == 4 {
            "lvg_not_a_key"
        } else {
            acme.plaintext.as_str()
        };
        let r = post_raw_jpeg(&url, key).await;
        assert_eq!(r.status, if i == 4 { 401 } else { 200 });
        ids.push(r.headers["x-request-id"].to_str().unwrap().to_owned());
    }
    rx.wait_for_logs(|l| l.len() >= 10, ARRIVAL)
        .await
        .unwrap_or_else(|got| panic!("{} of 10 audit records arrived", got.len()));
    // Exactly N: nothing more arrives once the trail is idle.
    written(&gw, 10).await;
    let logs = rx.logs();
    assert_eq!(logs.len(), 10, "{logs:#?}");
    let seqs: Vec<u64> = logs.iter().map(seq).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<u64>>());
    for (l, id) in logs.iter().zip(&ids) {
        let line: serde_json::Value = serde_json::from_str(&l.body).unwrap();
        assert_eq!(line["requestId"], id.as_str());
        assert_eq!(l.attr("requestId"), Some(id.as_str()));
        assert_eq!(l.event_name, "livegate.audit");
        assert_eq!(l.scope, "livegate.audit");
        assert_eq!(l.service_name, "livegate");
        assert_eq!(l.transport, "http");
        assert!(l.time_unix_nano > 0);
    }
    let rejected = &logs[4];
    assert_eq!(rejected.attr("outcome"), Some("rejected"));
    assert_eq!(
        (rejected.severity_number, rejected.severity_text.as_str()),
        (13, "WARN")
    );
    assert_eq!(rejected.attr("errorCode"), Some("40102"));
    assert_eq!(
        (logs[0].severity_number, logs[0].attr("tenant")),
        (9, Some("acme"))
    );
    assert_eq!(logs[0].attr("status"), Some("200"));

    // The collector goes away: the places fill, then requests are refused
    // before the vendor is called.
    drop(rx);
    let mut admitted = Vec::new();
    for _ in 0..4 {
        let r = post_raw_jpeg(&url, &acme.plaintext).await;
        assert_eq!(r.status, 200);
        admitted.push(r.headers["x-request-id"].to_str().unwrap().to_owned());
    }
    let calls = stub.calls();
    let r = post_raw_jpeg(&url, &acme.plaintext).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), 50305);
    assert_eq!(stub.calls(), calls, "refused before the vendor");

    // Back: every admitted record arrives, numbered on.
    let rx = OtlpReceiver::restart(&grpc, &http).unwrap();
    let logs = rx
        .wait_for_logs(
            |l| {
                admitted
                    .iter()
                    .all(|id| l.iter().any(|x| x.attr("requestId") == Some(id)))
            },
            ARRIVAL,
        )
        .await
        .unwrap_or_else(|got| panic!("admitted records lost: {got:#?}"));
    let mut seqs: Vec<u64> = logs.iter().map(seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs,
        [11, 12, 13, 14],
        "at least once, in order, none missing"
    );
    let r = post_raw_jpeg(&url, &acme.plaintext).await;
    assert_eq!(r.status, 200, "service resumes");
    rx.wait_for_logs(|l| l.iter().any(|x| seq(x) == 15), ARRIVAL)
        .await
        .unwrap_or_else(|got| panic!("record 15 missing: {got:#?}"));

    // The file sink alongside has the same records.
    assert!(gw.terminate().success());
    let lines = std::fs::read_to_string(&file).unwrap();
    let file_seqs: Vec<u64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(file_seqs, (1..=15).collect::<Vec<u64>>());
}
