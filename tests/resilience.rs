//! Vendor failures, HTTP/2 to the vendor, shutdown and the embedded default.

mod common;
// The vendor-client tests' TLS front (a TLS terminator that can drop the
// first connections it accepts), shared rather than copied.
#[path = "../crates/livegate-upstream/tests/common/mod.rs"]
mod upstream_common;

use std::time::Duration;

use common::*;
use livegate_stub::{Faults, StubConfig};

const VENDOR_KEY: &str = "vendor-key-resilience-77";

/// The gateway from the library, on a real socket in this process.
async fn gateway_in_process(config: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    let rt = livegate::runtime::build(&load_config(config))
        .await
        .unwrap();
    let app = livegate::gateway::router(&rt.gateway);
    let (addr, stop) = serve_in_process(rt, app).await;
    (format!("http://{addr}/modules/liveness"), stop)
}

/// A simulator with these settings, and an in-process gateway in front of
/// it for `key`'s tenant, with `extra_vendor` lines in `[vendor]`.
async fn gateway_before(
    stub: StubConfig,
    key: &TestKey,
    extra_vendor: &str,
) -> (
    livegate_stub::StubHandle,
    String,
    tokio::sync::oneshot::Sender<()>,
) {
    let stub = livegate_stub::spawn(stub).await.unwrap();
    let (url, stop) =
        gateway_in_process(&config(&stub.base_url(), VENDOR_KEY, key, extra_vendor)).await;
    (stub, url, stop)
}

fn config(vendor: &str, vendor_key: &str, key: &TestKey, extra_vendor: &str) -> String {
    let extra_vendor = if extra_vendor.contains("timeout_ms") {
        extra_vendor.to_owned()
    } else {
        format!("timeout_ms = 600\n{extra_vendor}")
    };
    format!(
        "[vendor]\nbase_url = \"{vendor}\"\napi_key = \"{vendor_key}\"\n{extra_vendor}\n[auth]\npepper = \"{PEPPER}\"\n{}",
        tenant_block("acme", false, &[(key, None, false)])
    )
}

fn image_body() -> String {
    face_json(&b64(&testdata("face-320x240.jpg")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_failures_become_documented_gateway_errors() {
    let key = make_key();
    let faults = |f: fn(&mut Faults)| {
        let mut faults = Faults {
            hang: Duration::from_secs(30),
            ..Faults::default()
        };
        f(&mut faults);
        faults
    };
    let cases: Vec<(&str, Faults, u16, Option<i64>)> = vec![
        ("reset", faults(|f| f.reset_rate = 1.0), 502, Some(50201)),
        (
            "timeout",
            faults(|f| f.timeout_rate = 1.0),
            504,
            Some(50401),
        ),
        (
            "malformed body",
            faults(|f| f.malformed_rate = 1.0),
            502,
            Some(50202),
        ),
        // A vendor 5xx with a JSON body is the vendor's answer: passed through.
        (
            "vendor 503",
            faults(|f| f.server_error_rate = 1.0),
            503,
            None,
        ),
        // The vendor's own 1017 is passed through unchanged.
        (
            "vendor 1017",
            faults(|f| f.error_rate = 1.0),
            400,
            Some(1017),
        ),
    ];
    for (name, faults, status, code) in cases {
        let (stub, url, _stop) = gateway_before(
            StubConfig {
                faults,
                ..StubConfig::new(VENDOR_KEY)
            },
            &key,
            "",
        )
        .await;
        let r = post_json(&url, Some(&key.plaintext), image_body()).await;
        assert_eq!(r.status.as_u16(), status, "{name}: {:?}", r.body);
        let v = r.json();
        assert_eq!(v["errorCode"].as_i64(), code, "{name}: {v}");
        if code.is_some_and(|c| c > 10_000) {
            assert!(v["requestId"].is_string(), "{name}");
        }
        assert_eq!(
            stub.calls(),
            1,
            "{name}: exactly one vendor call, no retries"
        );
    }

    // The vendor refuses the gateway's key: the operator's problem, not
    // the client's, so never a 401 to the client.
    let stub = livegate_stub::spawn(StubConfig::new("the-real-vendor-key"))
        .await
        .unwrap();
    let (url, _stop) =
        gateway_in_process(&config(&stub.base_url(), "a-wrong-vendor-key", &key, "")).await;
    let r = post_json(&url, Some(&key.plaintext), image_body()).await;
    assert_eq!((r.status.as_u16(), r.error_code()), (502, 50203));

    // Nothing listens: unreachable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (url, _stop) =
        gateway_in_process(&config(&format!("http://{closed}"), VENDOR_KEY, &key, "")).await;
    let r = post_json(&url, Some(&key.plaintext), image_body()).await;
    assert_eq!((r.status.as_u16(), r.error_code()), (502, 50201));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_to_the_vendor() {
    let key = make_key();
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    let (url, _stop) = gateway_in_process(&config(
        &stub.base_url(),
        VENDOR_KEY,
        &key,
        "http2_prior_knowledge = true",
    ))
    .await;
    // An h2-only client cannot talk to an HTTP/1.1-only server, so success
    // here means the call went over h2c.
    for _ in 0..3 {
        let r = post_json(&url, Some(&key.plaintext), image_body()).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert_eq!(stub.calls(), 3);
}

/// A gateway process in front of a vendor taking `latency`, with one
/// request in flight (the vendor has it); then SIGTERM. Returns the
/// in-flight request, the exit status and everything the gateway printed.
async fn terminate_during_a_request(
    latency: Duration,
    env: &[(&str, &str)],
) -> (
    tokio::task::JoinHandle<Resp>,
    std::process::ExitStatus,
    String,
) {
    let key = make_key();
    let stub = livegate_stub::spawn(StubConfig {
        latency,
        ..StubConfig::new(VENDOR_KEY)
    })
    .await
    .unwrap();
    let cfg = config(&stub.base_url(), VENDOR_KEY, &key, "timeout_ms = 300000");
    let mut gw = Proc::serve(Some(&cfg), env);
    let url = gw.url("/modules/liveness");
    let in_flight =
        tokio::spawn(async move { post_json(&url, Some(&key.plaintext), image_body()).await });
    while stub.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // terminate() fails the test if the process is still up after 30 s.
    let (status, out) = tokio::task::spawn_blocking(move || (gw.terminate(), gw.output()))
        .await
        .unwrap();
    (in_flight, status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let (in_flight, status, out) =
        terminate_during_a_request(Duration::from_millis(1500), &[]).await;
    let r = in_flight.await.unwrap();
    assert_eq!(
        r.status, 200,
        "the in-flight request must complete: {:?}",
        r.body
    );
    assert!(status.success(), "exit status {status:?}\n{out}");
    assert!(out.contains("SIGTERM received"));
    assert!(out.contains("drained"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_time_bounds_shutdown() {
    // The vendor would take two minutes; the drain allows 200 ms.
    let (_in_flight, status, out) = terminate_during_a_request(
        Duration::from_secs(120),
        &[("LIVEGATE_SERVER__DRAIN_TIMEOUT_MS", "200")],
    )
    .await;
    assert!(status.success(), "{out}");
    assert!(out.contains("drain time over"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_answers_with_the_printed_dev_key() {
    // No configuration at all: what a newcomer runs.
    let gw = Proc::serve(None, &[]);
    let out = gw.output();
    assert!(out.contains("EMBEDDED DEFAULT"), "{out}");
    let dev_key = gw.dev_key();
    let url = gw.url("/modules/liveness");
    let jpeg = testdata("face-320x240.jpg");
    let r = send(
        &url,
        "POST",
        &[
            ("x-api-key", dev_key.as_str()),
            ("content-type", "image/jpeg"),
        ],
        jpeg.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.json()["result"]["liveness_score"].as_u64(),
        Some(u64::from(livegate_stub::liveness_score(&jpeg)))
    );
    let r = post_json(&url, Some(&dev_key), face_json("not base64 at all!")).await;
    assert_eq!(r.error_code(), 42201);
    let r = send(&gw.url("/readyz"), "GET", &[], Vec::new()).await;
    assert_eq!(r.json()["mode"], "embedded");
    // The key is shown once, in the banner, and never again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gw.output().matches(&dev_key).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vendor_circuit_opens_spares_the_vendor_and_closes_after_a_good_probe() {
    let key = make_key();
    let (stub, url, _stop) = gateway_before(
        StubConfig {
            faults: Faults {
                reset_rate: 1.0,
                ..Faults::default()
            },
            ..StubConfig::new(VENDOR_KEY)
        },
        &key,
        "breaker_consecutive_failures = 3\nbreaker_open_ms = 400",
    )
    .await;
    let readyz = url.replace("/modules/liveness", "/readyz");
    for _ in 0..3 {
        let r = post_json(&url, Some(&key.plaintext), image_body()).await;
        assert_eq!((r.status.as_u16(), r.error_code()), (502, 50201));
    }
    assert_eq!(stub.calls(), 3);
    // Open: answered at once, the vendor is not called.
    for _ in 0..5 {
        let r = post_json(&url, Some(&key.plaintext), image_body()).await;
        assert_eq!((r.status.as_u16(), r.error_code()), (503, 50303));
        assert_eq!(r.headers["retry-after"], "1");
    }
    assert_eq!(
        stub.calls(),
        3,
        "the vendor was called while the circuit was open"
    );
    let r = send(&readyz, "GET", &[], Vec::new()).await;
    assert_eq!(r.status, 200, "an open circuit never fails readiness");
    assert_eq!(r.json()["vendorCircuit"], "open");

    // The vendor recovers; after the open time one probe goes through.
    stub.set_faults(Faults::default());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = post_json(&url, Some(&key.plaintext), image_body()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(stub.calls(), 4);
    let r = send(&readyz, "GET", &[], Vec::new()).await;
    assert_eq!(r.json()["vendorCircuit"], "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_that_refuses_the_first_connection_is_called_exactly_once() {
    let key = make_key();
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    // The first connection is closed before its TLS handshake: nothing of
    // the request was sent, so the gateway may try once more.
    let front = upstream_common::tls_front_dropping(stub.addr, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &front.ca_pem).unwrap();
    let (url, _stop) = gateway_in_process(&config(
        &upstream_common::https(front.addr),
        VENDOR_KEY,
        &key,
        &format!("ca_file = {:?}", ca.to_str().unwrap()),
    ))
    .await;
    let r = post_json(&url, Some(&key.plaintext), image_body()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(front.accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(stub.calls(), 1, "the vendor saw the request exactly once");
}
