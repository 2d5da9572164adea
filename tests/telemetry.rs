//! Metrics, audit and traces against real processes: a gateway process in
//! front of the simulator, scraped on its operations listener.

mod common;
// The store tests' private redis-server, shared rather than copied.
#[path = "../crates/livegate-auth/tests/common/mod.rs"]
mod redis_common;

use std::collections::BTreeMap;

use common::*;
use livegate_stub::{Faults, StubConfig};

const VENDOR_KEY: &str = "vendor-key-telemetry-1234";

/// The value of the sample `name{labels}` in a Prometheus text scrape
/// (labels exactly as written, in the gateway's order), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

async fn scrape(gw: &Proc) -> String {
    let r = send(&gw.ops_url("/metrics"), "GET", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    String::from_utf8(r.body.to_vec()).unwrap()
}

/// Tenant `acme` (unlimited) and tenant `small` (a monthly quota of 2), in
/// front of an in-process simulator.
async fn gateway(
    extra: &str,
    env: &[(&str, &str)],
) -> (Proc, livegate_stub::StubHandle, TestKey, TestKey) {
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY).recording())
        .await
        .unwrap();
    let acme = make_key();
    let small = make_key();
    let tenants = format!(
        "{}{}",
        tenant_block("acme", false, &[(&acme, None, false)]),
        tenant_block("small", false, &[(&small, None, false)]).replacen(
            "disabled = false\n",
            "disabled = false\nmonthly_quota = 2\n",
            1
        ),
    );
    let cfg = format!(
        "{}\n{extra}",
        config_with_vendor(&stub.base_url(), VENDOR_KEY, &tenants)
    );
    (Proc::serve(Some(&cfg), env), stub, acme, small)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_scripted_mix_exactly() {
    let (gw, stub, acme, small) = gateway("", &[]).await;
    let url = gw.url("/modules/liveness");
    let key = acme.plaintext.as_str();

    // Successes with three images: the simulator's score is a function of
    // the image, so the score histogram is known exactly.
    let images = ["face-320x240.jpg", "face-320x240.png", "face-640x480.jpg"];
    let mut scores = Vec::new();
    // Body bytes to and from the vendor, for acme.
    let (mut sent, mut received) = (0, 0);
    for (i, name) in images.iter().enumerate() {
        let img = testdata(name);
        for _ in 0..=i {
            let body = face_json(&b64(&img));
            sent += body.len();
            let r = post_json(&url, Some(key), body).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            received += r.body.len();
            let score = f64::from(livegate_stub::liveness_score(&img));
            assert_eq!(r.json()["result"]["liveness_score"].as_f64(), Some(score));
            scores.push(score);
        }
    }
    // No key, a wrong key: 401, before any tenant is known.
    for k in [None, Some("lvg_nope")] {
        assert_eq!(post_json(&url, k, face_json("abc")).await.status, 401);
    }
    // Bad input: 422.
    let r = post_json(&url, Some(key), face_json("*&^%")).await;
    assert_eq!(r.error_code(), 42201);
    // The vendor's own refusal: forwarded 400 1017.
    stub.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    for _ in 0..2 {
        let r = post_raw_jpeg(&url, key).await;
        assert_eq!(r.error_code(), 1017);
        // A raw upload goes to the vendor as the canonical JSON.
        sent += face_json(&b64(&testdata("face-320x240.jpg"))).len();
        received += r.body.len();
    }
    stub.set_faults(Faults::default());
    // The quota: two admitted, the third refused 42902.
    for expected in [200, 200, 429] {
        let r = post_raw_jpeg(&url, &small.plaintext).await;
        assert_eq!(r.status, expected);
    }

    let text = scrape(&gw).await;
    let req = |tenant: &str, outcome: &str, status: u16, code: &str| {
        sample(
            &text,
            &format!(
                "livegate_requests_total{{tenant=\"{tenant}\",outcome=\"{outcome}\",status=\"{status}\",error_code=\"{code}\"}}"
            ),
        )
    };
    assert_eq!(req("acme", "forwarded", 200, ""), 6.0, "{text}");
    assert_eq!(req("acme", "forwarded", 400, ""), 2.0);
    assert_eq!(req("acme", "rejected", 422, "42201"), 1.0);
    assert_eq!(req("", "rejected", 401, "40101"), 1.0);
    assert_eq!(req("", "rejected", 401, "40102"), 1.0);
    assert_eq!(req("small", "forwarded", 200, ""), 2.0);
    assert_eq!(req("small", "rejected", 429, "42902"), 1.0);
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("livegate_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 14.0, "every request counted once");
    assert_eq!(
        sample(
            &text,
            "livegate_ratelimit_refusals_total{tenant=\"small\",reason=\"quota\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "livegate_upstream_requests_total{tenant=\"acme\",result=\"ok\"}"
        ),
        6.0
    );
    assert_eq!(
        sample(
            &text,
            "livegate_upstream_requests_total{tenant=\"acme\",result=\"client_error\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            "livegate_request_duration_seconds_count{tenant=\"acme\",outcome=\"forwarded\"}"
        ),
        8.0
    );

    assert_eq!(
        sample(&text, "livegate_upstream_sent_bytes_total{tenant=\"acme\"}"),
        sent as f64
    );
    assert_eq!(
        sample(
            &text,
            "livegate_upstream_received_bytes_total{tenant=\"acme\"}"
        ),
        received as f64
    );
    // The score histogram, bucket by bucket.
    let mut expected = BTreeMap::new();
    for le in (1..=20).map(|i| i * 5) {
        let n = scores.iter().filter(|s| **s <= f64::from(le)).count();
        expected.insert(le, n as f64);
    }
    for (le, n) in &expected {
        assert_eq!(
            sample(
                &text,
                &format!("livegate_liveness_score_bucket{{tenant=\"acme\",le=\"{le}\"}}")
            ),
            *n,
            "bucket le={le}\n{text}"
        );
    }
    assert_eq!(
        sample(&text, "livegate_liveness_score_count{tenant=\"acme\"}"),
        6.0
    );
    assert_eq!(
        sample(&text, "livegate_liveness_score_sum{tenant=\"acme\"}"),
        scores.iter().sum::<f64>()
    );
    // The parts' state.
    assert_eq!(
        sample(&text, "livegate_vendor_circuit_state{state=\"closed\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "livegate_ratelimit_mode{mode=\"local\"}"),
        1.0
    );
    assert_eq!(sample(&text, "livegate_requests_in_flight"), 0.0);
    assert_eq!(sample(&text, "livegate_key_store_up"), 1.0);

    // Label values come from the store: a client's made-up key or header
    // never becomes a series.
    assert!(!text.contains("lvg_nope"));
}

/// The audit file's records, by requestId, after checking that their
/// sequence numbers are exactly 1..=n, in order, from one instance.
fn audit_records(
    path: &std::path::Path,
) -> (Vec<serde_json::Value>, BTreeMap<String, serde_json::Value>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
        .collect();
    for (i, r) in lines.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1, "contiguous sequence numbers");
        assert_eq!(r["instanceId"], lines[0]["instanceId"]);
    }
    let by_id = lines
        .iter()
        .map(|r| (r["requestId"].as_str().unwrap().to_owned(), r.clone()))
        .collect();
    (lines, by_id)
}

async fn wait_for_audit(
    path: &std::path::Path,
    n: usize,
) -> (Vec<serde_json::Value>, BTreeMap<String, serde_json::Value>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (lines, by_id) = audit_records(path);
        if lines.len() >= n || std::time::Instant::now() > deadline {
            return (lines, by_id);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn rid(r: &Resp) -> String {
    r.headers["x-request-id"].to_str().unwrap().to_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One client upload that stops halfway and goes away.
async fn abandoned_upload(gw: &Proc, key: &str, request_id: &str) {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /modules/liveness HTTP/1.1\r\nhost: x\r\nx-api-key: {key}\r\nx-request-id: {request_id}\r\ncontent-type: image/jpeg\r\ncontent-length: 100000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&testdata("face-320x240.jpg")[..2000])
        .await
        .unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(s);
}

/// N requests of every kind give exactly N audit records, in a contiguous
/// sequence, each with the facts its response showed; OTLP spans arrive
/// under the client's trace; every metric the dashboard queries exists;
/// and nothing captured holds the image or a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_traces_metrics_and_nothing_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let otlp = livegate_telemetry::testkit::OtlpReceiver::start().unwrap();
    // A score threshold for every tenant, so decisions are counted too.
    let extra = format!(
        "[audit]\nsink = \"file\"\npath = \"{}\"\n[protection]\nscore_threshold = 50\n",
        audit.display()
    );
    let endpoint = otlp.grpc_endpoint();
    let (mut gw, stub, acme, small) = gateway(
        &extra,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_SERVICE_NAME", "livegate-test"),
        ],
    )
    .await;
    let url = gw.url("/modules/liveness");
    let key = acme.plaintext.as_str();
    let jpeg = testdata("face-320x240.jpg");
    let b64_jpeg = b64(&jpeg);
    let mut expected = Vec::new(); // (requestId, status, errorCode)

    // A success, under the client's trace.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace}-{client_span}-01");
    let r = send(
        &url,
        "POST",
        &[
            ("x-api-key", &small.plaintext),
            ("content-type", "application/json"),
            ("traceparent", &traceparent),
        ],
        face_json(&b64_jpeg),
    )
    .await;
    assert_eq!(r.status, 200);
    let traced_rid = rid(&r);
    let tx = r.json()["transactionId"].as_str().unwrap().to_owned();
    let score = f64::from(livegate_stub::liveness_score(&jpeg));
    let vendor_traceparent = stub.last_headers().unwrap()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    expected.push((traced_rid.clone(), 200, None));
    // More successes, bad input, no key, the vendor's refusal, a vendor
    // fault, a quota refusal and abandoned uploads.
    for _ in 0..3 {
        let r = post_raw_jpeg(&url, key).await;
        expected.push((rid(&r), 200, None));
    }
    // Protection: a photo whose metadata is removed, and an idempotent
    // retry (the re-sent images above are flagged replays).
    let tagged = testdata("face-320x240-exif-gps.jpg");
    for idempotency_key in ["", "telemetry-1", "telemetry-1"] {
        let mut h = vec![("x-api-key", key), ("content-type", "image/jpeg")];
        if !idempotency_key.is_empty() {
            h.push(("idempotency-key", idempotency_key));
        }
        let r = send(&url, "POST", &h, tagged.clone()).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        expected.push((rid(&r), 200, None));
    }
    for (k, body, code) in [
        (Some(key), face_json("*&^%"), 42201),
        (None, face_json(&b64_jpeg), 40101),
        (Some("lvg_not_a_key"), face_json(&b64_jpeg), 40102),
        (Some(key), "{".to_owned(), 40001),
    ] {
        let r = post_json(&url, k, body).await;
        assert_eq!(r.error_code(), code);
        expected.push((rid(&r), r.status.as_u16(), Some(code)));
    }
    stub.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let r = post_raw_jpeg(&url, key).await;
    assert_eq!(r.error_code(), 1017);
    expected.push((rid(&r), 400, Some(1017)));
    stub.set_faults(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    });
    let r = post_raw_jpeg(&url, key).await;
    assert_eq!(r.status, 502);
    expected.push((rid(&r), 502, Some(r.error_code())));
    stub.set_faults(Faults::default());
    for status in [200, 429] {
        let r = post_raw_jpeg(&url, &small.plaintext).await;
        assert_eq!(r.status, status);
        expected.push((rid(&r), status, (status == 429).then_some(42902)));
    }
    for i in 0..2 {
        let id = format!("gone-{i}");
        abandoned_upload(&gw, key, &id).await;
        expected.push((id, 0, None));
    }

    // Audit: exactly N records, one per request, with the right facts.
    let (lines, by_id) = wait_for_audit(&audit, expected.len()).await;
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (id, status, code) in &expected {
        let rec = by_id
            .get(id)
            .unwrap_or_else(|| panic!("no record for {id}"));
        let mut keys: Vec<&str> = rec
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut want = livegate_audit::KEYS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want);
        if *status != 0 {
            assert_eq!(rec["status"], *status, "{rec}");
        }
        if let Some(c) = code {
            assert_eq!(rec["errorCode"], *c, "{rec}");
        }
    }
    let t = &by_id[&traced_rid];
    assert_eq!(t["tenant"], "small");
    assert_eq!(t["keyId"], small.kid);
    assert_eq!(t["outcome"], "forwarded");
    assert_eq!(t["transactionId"], tx.as_str());
    assert_eq!(t["liveness_score"], score);
    assert_eq!(t["imageSha256"], sha256_hex(&jpeg));
    assert_eq!(t["imageBytes"], jpeg.len());
    assert_eq!(
        (
            t["imageFormat"].as_str(),
            t["imageWidth"].as_u64(),
            t["imageHeight"].as_u64()
        ),
        (Some("jpeg"), Some(320), Some(240))
    );
    assert_eq!(t["traceId"], trace);
    assert!(t["upstreamMs"].as_f64().unwrap() > 0.0);
    assert!(t["totalMs"].as_f64().unwrap() >= t["upstreamMs"].as_f64().unwrap());
    assert_eq!(by_id["gone-0"]["tenant"], "acme");
    // The body stopped coming: answered 40006 to a client no longer there.
    assert_eq!(by_id["gone-0"]["errorCode"], 40006);

    // Traces: the server span continues the client's trace; auth, rate
    // limit, body reading and the vendor call are its children; the vendor
    // got the client span's context.
    // The protect spans of the other requests (every root is sampled) say
    // what protection found: the re-sent JPEGs are exact replays, the
    // tagged photo lost its EXIF, the retry was served from the store.
    let protect_found = |s: &[livegate_telemetry::testkit::ReceivedSpan]| {
        let protect = || s.iter().filter(|x| x.name == "protect");
        protect().any(|x| {
            x.attr("replay_match") == Some("exact") && x.attr("replay_distance") == Some("0")
        }) && protect().any(|x| {
            x.attr("metadata_removed")
                .is_some_and(|m| m.contains("exif"))
        }) && protect().any(|x| x.attr("idempotent_replay") == Some("true"))
    };
    let spans = otlp
        .wait_for(
            |s| {
                s.iter().filter(|x| x.trace_id == trace).count() >= 6
                    && s.iter().any(|x| x.trace_id == trace && x.kind == "server")
                    && protect_found(s)
            },
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("spans did not arrive: {:#?}", e.spans));
    let ours: Vec<_> = spans.iter().filter(|s| s.trace_id == trace).collect();
    let server = ours.iter().find(|s| s.kind == "server").unwrap();
    assert_eq!(server.name, "POST /modules/liveness");
    assert_eq!(server.parent_span_id, client_span);
    assert_eq!(server.service_name, "livegate-test");
    assert_eq!(server.transport, "grpc");
    for (k, v) in [
        ("http.request.method", "POST"),
        ("http.route", "/modules/liveness"),
        ("url.scheme", "http"),
        ("http.response.status_code", "200"),
        ("tenant", "small"),
        ("key_id", small.kid.as_str()),
        ("request_id", traced_rid.as_str()),
        ("transaction_id", tx.as_str()),
        ("outcome", "forwarded"),
        ("trace_id", trace),
    ] {
        assert_eq!(server.attr(k), Some(v), "{k} on {server:#?}");
    }
    assert_eq!(
        server
            .attr("liveness_score")
            .map(|s| s.parse::<f64>().unwrap()),
        Some(score)
    );
    for name in ["auth", "rate_limit", "read_and_normalize", "protect"] {
        let s = ours
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {ours:#?}"));
        assert_eq!(s.parent_span_id, server.span_id, "{name}");
    }
    assert!(protect_found(&spans), "{spans:#?}");
    let vendor = ours.iter().find(|s| s.kind == "client").unwrap();
    assert_eq!(vendor.name, "POST");
    assert_eq!(vendor.parent_span_id, server.span_id);
    assert_eq!(vendor.attr("http.response.status_code"), Some("200"));
    assert_eq!(vendor.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(
        vendor_traceparent,
        format!("00-{trace}-{}-01", vendor.span_id)
    );

    // Metrics: every metric the dashboard queries is in a scrape.
    let text = scrape(&gw).await;
    let mut present = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        present.insert(line.split(['{', ' ']).next().unwrap().to_owned());
    }
    // Counted only while a protection store (Redis) fails, which this test
    // does not break: its name is checked by livegate-metrics'
    // `protection_facts_feed_their_counters` and tests/protect.rs.
    present.insert("livegate_protection_store_errors_total".to_owned());
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/livegate-dashboard.json"
    ))
    .unwrap();
    let queried: std::collections::BTreeSet<String> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("livegate_"))
        .map(str::to_owned)
        .collect();
    assert!(queried.len() >= 15, "{queried:?}");
    for m in &queried {
        assert!(
            present.contains(m),
            "the dashboard queries {m}, absent from:\n{text}"
        );
    }
    assert_eq!(
        sample(&text, "livegate_audit_records_total"),
        expected.len() as f64
    );

    // Nothing captured holds the image or a key.
    gw.terminate();
    let mut captured = vec![
        ("process output", gw.output()),
        ("audit", std::fs::read_to_string(&audit).unwrap()),
        ("metrics", text),
    ];
    for s in otlp.spans() {
        captured.push(("span", format!("{s:?}")));
    }
    let secrets = [
        ("the image's base64", b64_jpeg[..64].to_owned()),
        ("a tenant key", acme.plaintext.clone()),
        ("a tenant key", small.plaintext.clone()),
        ("a made-up key", "lvg_not_a_key".to_owned()),
        ("the vendor key", VENDOR_KEY.to_owned()),
        ("the pepper", PEPPER.to_owned()),
    ];
    for (what, text) in &captured {
        for (name, secret) in &secrets {
            assert!(!text.contains(secret.as_str()), "{name} in the {what}");
        }
    }
}

/// OTLP over HTTP/protobuf too, under the client's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_arrive_over_otlp_http() {
    let otlp = livegate_telemetry::testkit::OtlpReceiver::start().unwrap();
    let endpoint = otlp.http_endpoint();
    let (gw, _stub, acme, _small) = gateway(
        "",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let r = send(
        &gw.url("/modules/liveness"),
        "POST",
        &[
            ("x-api-key", &acme.plaintext),
            ("content-type", "image/jpeg"),
            ("traceparent", &format!("00-{trace}-b7ad6b7169203331-01")),
        ],
        testdata("face-320x240.jpg"),
    )
    .await;
    assert_eq!(r.status, 200);
    let spans = otlp
        .wait_for(
            |s| s.iter().any(|x| x.trace_id == trace && x.kind == "server"),
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("spans did not arrive: {:#?}", e.spans));
    let server = spans
        .iter()
        .find(|x| x.trace_id == trace && x.kind == "server")
        .unwrap();
    assert_eq!(server.transport, "http");
    assert_eq!(server.parent_span_id, "b7ad6b7169203331");
    assert_eq!(server.service_name, "livegate");
    assert_eq!(server.attr("tenant"), Some("acme"));
    // Probes make no traces.
    assert_eq!(send(&gw.url("/readyz"), "GET", &[], "").await.status, 200);
    assert!(
        otlp.spans()
            .iter()
            .all(|s| s.attr("http.route") != Some("/readyz"))
    );
}

/// A stuck audit sink (a FIFO nobody reads): requests that got a place are
/// served, the next one waits `max_wait_ms` and gets 503 50305 without the
/// vendor being called; once the sink moves again every admitted record
/// is written, in sequence, and service resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_audit_sink_refuses_new_requests_and_loses_no_admitted_record() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let extra = format!(
        "[audit]\nsink = \"file\"\npath = \"{}\"\ncapacity = 2\nmax_wait_ms = 300\n",
        fifo.display()
    );
    let (mut gw, stub, acme, _small) = gateway(&extra, &[]).await;
    let url = gw.url("/modules/liveness");
    let key = acme.plaintext.as_str();
    let mut admitted = Vec::new();
    for _ in 0..2 {
        let r = post_raw_jpeg(&url, key).await;
        assert_eq!(r.status, 200);
        admitted.push(rid(&r));
    }
    let vendor_calls = stub.calls();
    let started = std::time::Instant::now();
    let r = post_raw_jpeg(&url, key).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), 50305);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(stub.calls(), vendor_calls, "refused before the vendor");
    let refused = rid(&r);
    let text = scrape(&gw).await;
    assert_eq!(sample(&text, "livegate_audit_refusals_total"), 1.0);
    assert_eq!(sample(&text, "livegate_audit_waits_total"), 1.0);
    assert_eq!(sample(&text, "livegate_audit_queue_depth"), 2.0);
    assert_eq!(sample(&text, "livegate_audit_unwritten_total"), 1.0);
    assert_eq!(sample(&text, "livegate_audit_records_total"), 0.0);

    // The sink moves again: read the FIFO.
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let f = std::fs::File::open(&fifo).unwrap();
        std::io::BufReader::new(f)
            .lines()
            .map(Result::unwrap)
            .collect::<Vec<String>>()
    });
    let r = post_raw_jpeg(&url, key).await;
    assert_eq!(r.status, 200, "service resumes");
    admitted.push(rid(&r));
    // Stopping writes everything queued, then closes the FIFO.
    assert!(gw.terminate().success());
    let lines = reader.join().unwrap();
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r["requestId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, admitted);
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    // The refused request's exchange is in the application log.
    let out = gw.output();
    assert!(
        out.lines()
            .any(|l| l.contains(&refused) && l.contains("AuditUnavailable")),
        "{out}"
    );
}

const ADMIN_TOKEN: &str = "admin-token-telemetry-0123456789";

/// The Redis audit sink: records land in a Stream on a private
/// redis-server and the admin API finds one by its transactionId; with the
/// stdout sink the lookup says it needs Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_audit_sink_serves_lookups_by_transaction_id() {
    let redis = redis_common::Server::start(&[]);
    let admin = format!("[admin]\ntoken = \"{ADMIN_TOKEN}\"\n");
    let extra = format!(
        "{admin}[redis]\nurl = \"{}\"\n[audit]\nsink = \"redis\"\n",
        redis.url()
    );
    let (gw, _stub, acme, _small) = gateway(&extra, &[]).await;
    let r = post_raw_jpeg(&gw.url("/modules/liveness"), &acme.plaintext).await;
    assert_eq!(r.status, 200);
    let tx = r.json()["transactionId"].as_str().unwrap().to_owned();
    let bad = post_json(&gw.url("/modules/liveness"), None, "{}").await;
    assert_eq!(bad.status, 401);

    let auth = format!("Bearer {ADMIN_TOKEN}");
    let lookup = |tx: String, auth: String| {
        let url = gw.ops_url(&format!("/admin/v1/audit/{tx}"));
        async move { send(&url, "GET", &[("authorization", auth.as_str())], "").await }
    };
    // Written asynchronously: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let found = loop {
        let r = lookup(tx.clone(), auth.clone()).await;
        if r.status == 200 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(found.status, 200, "{:?}", found.body);
    let rec = found.json();
    assert_eq!(rec["transactionId"], tx.as_str());
    assert_eq!(rec["requestId"], rid(&r).as_str());
    assert_eq!(rec["tenant"], "acme");
    assert_eq!(rec["status"], 200);
    assert_eq!(
        rec["imageSha256"],
        sha256_hex(&testdata("face-320x240.jpg"))
    );
    // Both records are in the stream, in order.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while redis
        .cli(&["XLEN", "livegate:{audit}"])
        .as_deref()
        .map(str::trim)
        != Some("2")
    {
        assert!(std::time::Instant::now() < deadline, "stream length");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let r = lookup("nosuchtransaction".into(), auth.clone()).await;
    assert_eq!((r.status.as_u16(), r.error_code()), (404, 40404));
    let r = lookup(tx.clone(), "Bearer wrong-token-0123456789".into()).await;
    assert_eq!((r.status.as_u16(), r.error_code()), (401, 40106));

    // Without the Redis sink there is nothing to look records up in.
    let (gw2, _stub2, _, _) = gateway(&admin, &[]).await;
    let r = send(
        &gw2.ops_url(&format!("/admin/v1/audit/{tx}")),
        "GET",
        &[("authorization", auth.as_str())],
        "",
    )
    .await;
    assert_eq!((r.status.as_u16(), r.error_code()), (404, 40405));
}
