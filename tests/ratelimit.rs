//! Rate limits and quotas against real processes: the embedded default
//! limits its development tenant in process; three gateway replicas sharing
//! one private `redis-server` admit exactly what GCRA allows and exactly the
//! monthly quota, whichever replica a request reaches.

mod common;
#[path = "../crates/livegate-auth/tests/common/mod.rs"]
mod redis_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use livegate_stub::StubConfig;

const VENDOR_KEY: &str = "vendor-key-ratelimit-1234";
// Replay detection off: these tests time the limiter from the clients'
// side, and each replay check is a perceptual hash (slow in a debug build)
// plus Redis round trips that, with Redis frozen, each wait their timeout —
// latency that widens the timing error without involving the limiter.
// Protection under a frozen Redis is tested in tests/protect.rs.
const NO_REPLAY: &str = "\n[protection]\nreplay = \"off\"\n";

fn header(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_limits_its_development_tenant() {
    let gw = Proc::serve(None, &[]);
    let key = gw.dev_key();
    let url = gw.url("/modules/liveness");
    let r = post_raw_jpeg(&url, &key).await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "ratelimit-limit").as_deref(), Some("10"));
    // The first request of a fresh process leaves the rest of the burst.
    assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some("9"));
    assert!(header(&r, "ratelimit-reset").is_some());
    // A gateway error after auth carries them too.
    let r = post_json(&url, Some(&key), face_json("not base64!")).await;
    assert_eq!(r.error_code(), 42201);
    assert!(
        header(&r, "ratelimit-remaining").is_some(),
        "{:?}",
        r.headers
    );
    // Past the burst of 10: 429 with Retry-After, and the body never read.
    let mut limited = None;
    for _ in 0..30 {
        let r = post_raw_jpeg(&url, &key).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the development tenant is limited");
    assert_eq!(r.error_code(), 42901);
    assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some("0"));
    assert!(header(&r, "retry-after").is_some_and(|v| v.parse::<u64>().unwrap() >= 1));
    // An unauthenticated request is not limited (and carries no headers).
    let r = post_raw_jpeg(&url, "lvg_nope").await;
    assert_eq!(r.status, 401);
    assert!(header(&r, "ratelimit-limit").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_cap_refuses_past_its_burst_with_its_own_code() {
    // The development tenant allows a burst of 10; the global cap allows 2,
    // so the third request is refused by the cap, not by the tenant's limit.
    let gw = Proc::serve(
        None,
        &[
            ("LIVEGATE_RATELIMIT__GLOBAL_RATE_PER_SECOND", "0.01"),
            ("LIVEGATE_RATELIMIT__GLOBAL_BURST", "2"),
        ],
    );
    let key = gw.dev_key();
    let url = gw.url("/modules/liveness");
    for _ in 0..2 {
        assert_eq!(post_raw_jpeg(&url, &key).await.status, 200);
    }
    let r = post_raw_jpeg(&url, &key).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), 42903);
    assert!(header(&r, "retry-after").is_some_and(|v| v.parse::<u64>().unwrap() >= 1));
    // The tenant's own budget was not what refused it.
    assert!(
        header(&r, "ratelimit-remaining").is_some_and(|v| v != "0"),
        "{:?}",
        r.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_exact_limits_through_redis() {
    let redis = redis_common::Server::start(&[]);
    three_replicas_share_exact_limits(&redis.url(), "redis").await;
}

/// Three gateway replicas on the Redis at `redis_url` (one server or a
/// cluster's nodes): six clients hammering all three get exactly what GCRA
/// allows, and a quota admits exactly Q across them, then 42902.
async fn three_replicas_share_exact_limits(redis_url: &str, what: &str) {
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    let rate_key = make_key();
    let quota_key = make_key();
    const RATE: f64 = 10.0;
    const BURST: u64 = 5;
    const QUOTA: u64 = 25;
    let tenants = format!(
        "[[tenants]]\nid = \"rated\"\nrate_per_second = {RATE}\nburst = {BURST}\n\
         [[tenants.keys]]\nid = \"{}\"\nhash = \"{}\"\n\
         [[tenants]]\nid = \"quoted\"\nmonthly_quota = {QUOTA}\n\
         [[tenants.keys]]\nid = \"{}\"\nhash = \"{}\"\n",
        rate_key.kid, rate_key.hash, quota_key.kid, quota_key.hash
    );
    let cfg = format!(
        "{}\n[redis]\nurl = \"{}\"\n[ratelimit]\nreplicas = 3\ntimeout_ms = 500\n{NO_REPLAY}",
        config_with_vendor(&stub.base_url(), VENDOR_KEY, &tenants),
        redis_url
    );
    let gws: Vec<Proc> = (0..3).map(|_| Proc::serve(Some(&cfg), &[])).collect();
    let urls: Arc<Vec<String>> = Arc::new(gws.iter().map(|g| g.url("/modules/liveness")).collect());
    let jpeg = Arc::new(testdata("face-320x240.jpg"));

    // Both tenants live in the cluster, and the limiter uses it.
    let r = send(&gws[0].url("/readyz"), "GET", &[], Vec::new()).await;
    assert_eq!(r.json()["rateLimiter"]["mode"], "redis", "{:?}", r.body);

    // Six clients hammer the three replicas for ~3 s.
    let admitted = Arc::new(AtomicU64::new(0));
    let first = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let deadline = Instant::now() + Duration::from_secs(3);
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let (urls, admitted, first, key, jpeg) = (
                urls.clone(),
                admitted.clone(),
                first.clone(),
                rate_key.plaintext.clone(),
                jpeg.clone(),
            );
            tokio::spawn(async move {
                let mut n = i;
                let mut last_ok = None;
                while Instant::now() < deadline {
                    let r = send(
                        &urls[n % 3],
                        "POST",
                        &[("x-api-key", key.as_str()), ("content-type", "image/jpeg")],
                        jpeg.to_vec(),
                    )
                    .await;
                    n += 1;
                    match r.status.as_u16() {
                        200 => {
                            let now = Instant::now();
                            first.lock().unwrap().get_or_insert(now);
                            last_ok = Some(now);
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                        429 => assert_eq!(r.error_code(), 42901),
                        other => panic!("status {other}: {:?}", r.body),
                    }
                }
                last_ok
            })
        })
        .collect();
    let mut last = None;
    for c in clients {
        last = last.max(c.await.unwrap());
    }
    let span = last.unwrap() - first.lock().unwrap().unwrap();
    let admitted = admitted.load(Ordering::SeqCst);
    let expected = BURST as f64 + RATE * span.as_secs_f64();
    println!(
        "{what} rate: {admitted} admitted over {span:?} across 3 replicas, GCRA allows {expected:.1}"
    );
    // ±1, plus 20 ms of the clients' own timing of first and last admission.
    assert!(
        (admitted as f64 - expected).abs() <= 1.0 + RATE * 0.02,
        "admitted {admitted}, expected {expected:.1}"
    );

    // The quota: exactly Q across the three, then 42902.
    let mut ok = 0;
    let mut refused_after = None;
    for i in 0..(QUOTA + 5) {
        let r = send(
            &urls[(i % 3) as usize],
            "POST",
            &[
                ("x-api-key", quota_key.plaintext.as_str()),
                ("content-type", "image/jpeg"),
            ],
            jpeg.to_vec(),
        )
        .await;
        match r.status.as_u16() {
            200 => ok += 1,
            429 => {
                assert_eq!(r.error_code(), 42902);
                refused_after.get_or_insert(ok);
            }
            other => panic!("status {other}: {:?}", r.body),
        }
    }
    println!("{what} quota: {ok} admitted of {QUOTA}, refused after {refused_after:?}");
    assert_eq!(ok, QUOTA);
    assert_eq!(refused_after, Some(QUOTA));
}

/// Status of a raw upload and how long it took.
async fn metrics(gw: &Proc) -> String {
    let r = send(&gw.ops_url("/metrics"), "GET", &[], Vec::new()).await;
    String::from_utf8(r.body.to_vec()).unwrap()
}

fn redis_errors(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("livegate_redis_errors_total "))
        .unwrap()
        .parse()
        .unwrap()
}

async fn timed(url: &str, key: &str, jpeg: &[u8]) -> (u16, Duration) {
    let t = Instant::now();
    let r = send(
        url,
        "POST",
        &[("x-api-key", key), ("content-type", "image/jpeg")],
        jpeg.to_vec(),
    )
    .await;
    (r.status.as_u16(), t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_or_dead_redis_costs_a_bounded_wait_and_never_a_5xx() {
    // Written to disk, so the restart after the kill keeps the tenant.
    let dir = tempfile::tempdir().unwrap();
    let mut redis = redis_common::Server::start_persistent(dir.path());
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    let key = make_key();
    let tenants = format!(
        "[[tenants]]\nid = \"rated\"\nrate_per_second = 10.0\nburst = 6\n\
         [[tenants.keys]]\nid = \"{}\"\nhash = \"{}\"\n",
        key.kid, key.hash
    );
    let cfg = format!(
        "{}\n[redis]\nurl = \"{}\"\n[ratelimit]\nreplicas = 3\n{NO_REPLAY}",
        config_with_vendor(&stub.base_url(), VENDOR_KEY, &tenants),
        redis.url()
    );
    let gw = Proc::serve(Some(&cfg), &[]);
    let url = gw.url("/modules/liveness");
    let readyz = gw.url("/readyz");
    let jpeg = testdata("face-320x240.jpg");
    assert_eq!(timed(&url, &key.plaintext, &jpeg).await.0, 200);
    let r = send(&readyz, "GET", &[], Vec::new()).await;
    assert_eq!(r.json()["rateLimiter"]["mode"], "redis");

    // Frozen (accepts connections, never answers), then dead: the limiter
    // falls back to this replica's share (burst 6 / 3 replicas = 2), each
    // request waits at most the Redis timeouts plus a small constant, and
    // none gets a 5xx.
    let m = metrics(&gw).await;
    assert!(
        m.contains("livegate_ratelimit_mode{mode=\"redis\"} 1\n"),
        "{m}"
    );
    let mut errors_before = redis_errors(&m);
    assert_eq!(errors_before, 0);
    for outage in ["frozen", "dead"] {
        tokio::time::sleep(Duration::from_millis(1200)).await; // a full burst again
        if outage == "frozen" {
            redis.signal("-STOP");
        } else {
            redis.kill();
        }
        let mut ok = 0;
        for _ in 0..8 {
            let (status, took) = timed(&url, &key.plaintext, &jpeg).await;
            assert!(status == 200 || status == 429, "{outage}: status {status}");
            // 25 ms limiter + 50 ms key store timeouts, plus the request itself.
            assert!(
                took < Duration::from_millis(1000),
                "{outage}: took {took:?}"
            );
            ok += u32::from(status == 200);
        }
        assert!(ok <= 3, "{outage}: {ok} admitted beyond the local share");
        let r = send(&readyz, "GET", &[], Vec::new()).await;
        assert_eq!(r.status, 200, "fail_mode local keeps the replica ready");
        assert_eq!(r.json()["rateLimiter"]["mode"], "local", "{outage}");
        // ... and in the metrics: the mode in force and the errors counted.
        let m = metrics(&gw).await;
        assert!(
            m.contains("livegate_ratelimit_mode{mode=\"local\"} 1\n"),
            "{outage}: {m}"
        );
        assert!(m.contains("livegate_ratelimit_mode{mode=\"redis\"} 0\n"));
        let errors = redis_errors(&m);
        assert!(errors > errors_before, "{outage}: redis errors {errors}");
        errors_before = errors;
        if outage == "frozen" {
            redis.signal("-CONT");
        } else {
            redis.restart();
        }
        // Exact limiting resumes by itself.
        let back = Instant::now();
        loop {
            let _ = timed(&url, &key.plaintext, &jpeg).await;
            let r = send(&readyz, "GET", &[], Vec::new()).await;
            if r.json()["rateLimiter"]["mode"] == "redis" {
                break;
            }
            assert!(
                back.elapsed() < Duration::from_secs(10),
                "{outage}: never back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let m = metrics(&gw).await;
        assert!(
            m.contains("livegate_ratelimit_mode{mode=\"redis\"} 1\n"),
            "{outage}: {m}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_exact_limits_through_a_redis_cluster() {
    let cluster = redis_common::Cluster::start();
    // `[redis] url` takes a cluster's nodes comma-separated.
    three_replicas_share_exact_limits(&cluster.urls().join(","), "cluster").await;
    // The rate state really was spread over the cluster's nodes.
    let holding = cluster
        .nodes
        .iter()
        .filter(|n| n.cli(&["dbsize"]).is_some_and(|r| r.trim() != "0"))
        .count();
    println!("cluster: keys on {holding} of 3 nodes");
    assert!(holding >= 2, "keys on {holding} of 3 nodes");
}
