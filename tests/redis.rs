//! Tenants and keys in Redis, against real processes: a private
//! `redis-server`, two gateway replicas sharing it, and the admin API of one
//! of them. A revoke through replica A is refused by replica B within a
//! second, with pub/sub working and with it broken; Redis killed mid-run
//! leaves verified keys working and unseen ones at 503, never 500, and the
//! gateways recover by themselves; no plaintext key is ever stored.

mod common;
// The store tests' private redis-server, shared rather than copied.
#[path = "../crates/livegate-auth/tests/common/mod.rs"]
mod redis_common;

use std::time::{Duration, Instant};

use common::*;
use livegate_stub::StubConfig;

const VENDOR_KEY: &str = "vendor-key-redis-31337";
const ADMIN_TOKEN: &str = "admin-token-redis-test-0123456789";

async fn admin(gw: &Proc, method: &str, path: &str, body: &str) -> Resp {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    send(
        &gw.ops_url(path),
        method,
        &[("authorization", auth.as_str())],
        body.to_owned(),
    )
    .await
}

async fn issue(gw: &Proc) -> (String, String) {
    let r = admin(gw, "POST", "/admin/v1/tenants/acme/keys", "").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let v = r.json();
    (
        v["key"].as_str().unwrap().to_owned(),
        v["keyId"].as_str().unwrap().to_owned(),
    )
}

/// Status and errorCode of a raw upload with `key` to `gw`.
async fn use_key(gw: &Proc, key: &str) -> (u16, Option<i64>) {
    let r = post_raw_jpeg(&gw.url("/modules/liveness"), key).await;
    let code = (r.status != 200).then(|| r.error_code());
    (r.status.as_u16(), code)
}

/// How long after `since` replica `gw` first refuses `key` with `code`.
async fn refused_within(gw: &Proc, key: &str, code: i64, since: Instant) -> Duration {
    loop {
        if use_key(gw, key).await.1 == Some(code) {
            return since.elapsed();
        }
        assert!(since.elapsed() < Duration::from_secs(10), "never refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_tenants_and_keys_through_redis() {
    // Written to disk, so a restart keeps the data: the outage is the point.
    let dir = tempfile::tempdir().unwrap();
    let mut redis = redis_common::Server::start_persistent(dir.path());
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    let cfg = format!(
        "{}\n[redis]\nurl = \"{}\"\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n",
        config_with_vendor(&stub.base_url(), VENDOR_KEY, ""),
        redis.url()
    );
    let a = Proc::serve(Some(&cfg), &[]);
    let b = Proc::serve(Some(&cfg), &[]);
    let r = send(&b.url("/readyz"), "GET", &[], Vec::new()).await;
    assert_eq!(r.json()["keyStore"]["backend"], "redis");

    // A tenant and a key made through A work on B.
    let r = admin(&a, "POST", "/admin/v1/tenants", r#"{"id":"acme"}"#).await;
    assert_eq!(r.status, 201);
    let (key1, kid1) = issue(&a).await;
    assert_eq!(use_key(&b, &key1).await, (200, None));

    // A revoke through A is refused by B within a second.
    let r = admin(&a, "POST", &format!("/admin/v1/keys/{kid1}/revoke"), "").await;
    let revoked_at = Instant::now();
    assert_eq!(r.status, 200);
    let took = refused_within(&b, &key1, 40103, revoked_at).await;
    println!("revoke through A refused by B after {took:?} (pub/sub)");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // Again with the replicas' pub/sub connections cut: the cache's
    // one-second backstop still holds.
    let (key2, kid2) = issue(&a).await;
    assert_eq!(use_key(&b, &key2).await, (200, None));
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]).unwrap();
    let r = admin(&a, "POST", &format!("/admin/v1/keys/{kid2}/revoke"), "").await;
    let revoked_at = Instant::now();
    assert_eq!(r.status, 200);
    let took = refused_within(&b, &key2, 40103, revoked_at).await;
    println!("revoke through A refused by B after {took:?} (pub/sub cut)");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // A tenant disabled through A is refused by B within a second too.
    let (key3, _) = issue(&a).await;
    assert_eq!(use_key(&b, &key3).await, (200, None));
    admin(&a, "POST", "/admin/v1/tenants/acme/disable", "").await;
    let took = refused_within(&b, &key3, 40301, Instant::now()).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    admin(&a, "POST", "/admin/v1/tenants/acme/enable", "").await;
    let took = Instant::now();
    while use_key(&b, &key3).await != (200, None) {
        assert!(
            took.elapsed() < Duration::from_secs(5),
            "never enabled again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // No plaintext key, nor any part of its secret, is stored in Redis.
    let stored = redis_common::dump(&redis.url(), "livegate").await;
    assert!(!stored.is_empty(), "the records are in redis");
    let values: String = stored.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect();
    for key in [&key1, &key2, &key3] {
        let secret = key.rsplit('_').next().unwrap();
        assert!(
            !values.contains(&secret[..16]),
            "a secret is stored in redis"
        );
        assert!(!values.contains(key.as_str()));
    }

    // Redis goes away: B keeps serving the key it verified; a key it has
    // never seen gets 503 (not a 401 that would make the app think its key
    // is bad), and nothing answers 500.
    let (key4, _) = issue(&a).await;
    redis.kill();
    assert_eq!(use_key(&b, &key3).await, (200, None));
    assert_eq!(use_key(&b, &key4).await, (503, Some(50301)));
    let r = send(&b.url("/readyz"), "GET", &[], Vec::new()).await;
    assert_eq!(r.status, 200, "fail_mode local keeps the replica ready");
    assert_eq!(r.json()["keyStore"]["ok"], false);
    let r = admin(&a, "POST", "/admin/v1/tenants", r#"{"id":"during-outage"}"#).await;
    assert_eq!((r.status.as_u16(), r.error_code()), (503, 50301));

    // Redis returns: both replicas recover by themselves.
    redis.restart();
    let back = Instant::now();
    while use_key(&b, &key4).await != (200, None) {
        assert!(back.elapsed() < Duration::from_secs(10), "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = send(&b.url("/readyz"), "GET", &[], Vec::new()).await;
    assert_eq!(r.json()["keyStore"]["ok"], true);

    for gw in [a, b] {
        let mut gw = gw;
        gw.terminate();
        let out = gw.output();
        for key in [&key1, &key2, &key3, &key4] {
            assert!(!out.contains(key.as_str()), "a key in the logs");
        }
        assert!(!out.contains(ADMIN_TOKEN), "the admin token in the logs");
    }
}

/// Redis restarts while two replicas are idle: the first liveness request
/// (a key verified before the outage) and the first admin read after it
/// are answered 200 — the dead pooled connection is retried once on a
/// fresh one, and the re-subscription keeps verified keys servable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_requests_after_a_redis_restart_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = redis_common::Server::start_persistent(dir.path());
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    let cfg = format!(
        "{}\n[redis]\nurl = \"{}\"\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n",
        config_with_vendor(&stub.base_url(), VENDOR_KEY, ""),
        redis.url()
    );
    let a = Proc::serve(Some(&cfg), &[]);
    let b = Proc::serve(Some(&cfg), &[]);
    let r = admin(&a, "POST", "/admin/v1/tenants", r#"{"id":"acme"}"#).await;
    assert_eq!(r.status, 201);
    let (key, _) = issue(&a).await;
    assert_eq!(use_key(&a, &key).await, (200, None));
    let r = admin(&b, "GET", "/admin/v1/tenants/acme", "").await;
    assert_eq!(r.status, 200);

    redis.kill();
    redis.restart();
    // Idle meanwhile: long enough for the invalidation subscribers to come
    // back (200 ms after a disconnect) and the cached lookup to be due for
    // a refresh (900 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        use_key(&a, &key).await,
        (200, None),
        "first liveness request"
    );
    let r = admin(&b, "GET", "/admin/v1/tenants/acme", "").await;
    assert_eq!(r.status, 200, "first admin read: {:?}", r.body);
}

/// A TCP proxy in front of Redis that holds every chunk a client sends for
/// `delay` before passing it on: a Redis whose writes (and reads) take that
/// long, as with `appendfsync always` on a slow disk.
async fn delaying_proxy(redis_port: u16, delay: Duration) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", redis_port)).await
                else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        tokio::time::sleep(delay).await;
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
            });
        }
    });
    port
}

/// Against a Redis that takes ~200 ms per command: key issuance succeeds
/// (admin calls have their own 2 s timeout, not the hot path's 50 ms), a
/// retry with the same `requestId` creates no second key and answers 409
/// 40905 naming the first, and no secret is found in Redis afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_issuance_against_a_slow_redis_is_safe_to_retry() {
    let redis = redis_common::Server::start(&[]);
    let proxy = delaying_proxy(redis.port, Duration::from_millis(200)).await;
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    let cfg = format!(
        "{}\n[redis]\nurl = \"redis://127.0.0.1:{proxy}/0\"\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n",
        config_with_vendor(&stub.base_url(), VENDOR_KEY, ""),
    );
    let gw = Proc::serve(Some(&cfg), &[]);
    let r = admin(&gw, "POST", "/admin/v1/tenants", r#"{"id":"acme"}"#).await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    let body = r#"{"requestId":"deploy-42-issue-1"}"#;
    let r = admin(&gw, "POST", "/admin/v1/tenants/acme/keys", body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let first = r.json();
    let (key, kid) = (
        first["key"].as_str().unwrap().to_owned(),
        first["keyId"].as_str().unwrap().to_owned(),
    );
    // The operator's retry (the first answer was lost): no second key.
    let r = admin(&gw, "POST", "/admin/v1/tenants/acme/keys", body).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (409, 40905),
        "{:?}",
        r.body
    );
    assert_eq!(r.json()["keyId"], kid.as_str());
    let secret = key.rsplit('_').next().unwrap();
    assert!(!String::from_utf8_lossy(&r.body).contains(secret));
    let r = admin(&gw, "GET", "/admin/v1/tenants/acme/keys", "").await;
    assert_eq!(r.status, 200);
    let keys = r.json();
    assert_eq!(keys.as_array().map(Vec::len), Some(1), "{keys}");
    // Another requestId is another key; none is a bad request.
    let r = admin(
        &gw,
        "POST",
        "/admin/v1/tenants/acme/keys",
        r#"{"requestId":"deploy-42-issue-2"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let second = r.json()["key"].as_str().unwrap().to_owned();
    let r = admin(
        &gw,
        "POST",
        "/admin/v1/tenants/acme/keys",
        r#"{"requestId":""}"#,
    )
    .await;
    assert_eq!((r.status.as_u16(), r.error_code()), (400, 40007));

    // Nothing in Redis holds a secret (nor the plaintext of either key).
    let values: String = redis_common::dump(&redis.url(), "livegate")
        .await
        .into_iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    for key in [&key, &second] {
        let secret = key.rsplit('_').next().unwrap();
        assert!(
            !values.contains(&secret[..16]),
            "a secret is stored in redis"
        );
    }
    assert!(
        !values.contains("deploy-42"),
        "the client's requestId is stored as a digest"
    );
}
