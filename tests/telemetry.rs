//! Metrics, audit and traces against real processes: a gateway process in
//! front of the simulator, scraped on its operations listener.

mod common;

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
    for (i, name) in images.iter().enumerate() {
        let img = testdata(name);
        for _ in 0..=i {
            let r = post_json(&url, Some(key), face_json(&b64(&img))).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
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
