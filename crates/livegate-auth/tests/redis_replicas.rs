//! Several replicas on one Redis: a revoke or disable is honoured by every
//! replica within 1 s, through pub/sub and (with pub/sub broken) through
//! the cache TTL alone; and a Redis outage and recovery.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use livegate_auth::{
    KeyAdmin, KeyRecord, KeyStore, Pepper, RedisSettings, RedisStore, StoreError, Tenant, generate,
};
use livegate_core::Timestamp;

fn new_key(tenant: &str) -> KeyRecord {
    let k = generate();
    let pepper = Pepper::new("0123456789abcdef0123").unwrap();
    KeyRecord::new(k.kid.clone(), tenant, k.hash(&pepper))
}

async fn wait_subscribed(s: &RedisStore) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.subscribed() {
        assert!(Instant::now() < deadline, "subscriber did not connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `b` every 10 ms until `seen` holds for `kid`'s entry; the time
/// from now (just after the write returned) to the first such lookup.
async fn time_until(
    b: &RedisStore,
    kid: &str,
    seen: impl Fn(&livegate_auth::KeyEntry) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let e = b.lookup(kid).await.unwrap().unwrap();
        if seen(&e) {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(3), "never seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A revoke through `a` and a tenant disable through `a`, each measured on
/// `b`, which had the key cached just before.
async fn revoke_and_disable_reach(a: &RedisStore, b: &RedisStore, tenant: &str) -> [Duration; 2] {
    a.create_tenant(Tenant::new(tenant)).await.unwrap();
    let k1 = new_key(tenant);
    let k2 = new_key(tenant);
    a.add_key(k1.clone()).await.unwrap();
    a.add_key(k2.clone()).await.unwrap();
    // Warm b's cache for both keys.
    assert!(
        !b.lookup(k1.kid.as_str())
            .await
            .unwrap()
            .unwrap()
            .key
            .revoked
    );
    assert!(
        !b.lookup(k2.kid.as_str())
            .await
            .unwrap()
            .unwrap()
            .tenant
            .disabled
    );

    a.revoke_key(k1.kid.as_str()).await.unwrap();
    let revoke = time_until(b, k1.kid.as_str(), |e| e.key.revoked).await;
    a.set_tenant_disabled(tenant, true, Timestamp(std::time::SystemTime::now()))
        .await
        .unwrap();
    let disable = time_until(b, k2.kid.as_str(), |e| e.tenant.disabled).await;
    [revoke, disable]
}

#[tokio::test]
async fn a_revoke_reaches_another_replica_within_one_second() {
    let t = common::target();
    let a = RedisStore::new(&t.url, t.settings()).unwrap();
    let b = RedisStore::new(&t.url, t.settings()).unwrap();
    wait_subscribed(&a).await;
    wait_subscribed(&b).await;

    // Through pub/sub: well under the TTL.
    let [revoke, disable] = revoke_and_disable_reach(&a, &b, "pubsub").await;
    eprintln!("pub/sub: revoke seen after {revoke:?}, disable after {disable:?}");
    assert!(revoke < Duration::from_secs(1) && disable < Duration::from_secs(1));
    assert!(revoke < Duration::from_millis(500) && disable < Duration::from_millis(500));

    // B never hears of changes: the TTL alone bounds it.
    let deaf = RedisStore::new(
        &t.url,
        RedisSettings {
            invalidation: false,
            ..t.settings()
        },
    )
    .unwrap();
    let [revoke, disable] = revoke_and_disable_reach(&a, &deaf, "deaf").await;
    eprintln!("no pub/sub: revoke seen after {revoke:?}, disable after {disable:?}");
    assert!(revoke < Duration::from_secs(1) && disable < Duration::from_secs(1));
}

#[tokio::test]
async fn killed_pubsub_connections_still_honour_a_revoke_within_one_second() {
    let t = common::target();
    let Some(server) = &t.server else {
        eprintln!("skipped: needs a private redis-server");
        return;
    };
    let a = RedisStore::new(&t.url, t.settings()).unwrap();
    let b = RedisStore::new(&t.url, t.settings()).unwrap();
    wait_subscribed(&b).await;
    a.create_tenant(Tenant::new("acme")).await.unwrap();
    let k = new_key("acme");
    a.add_key(k.clone()).await.unwrap();
    assert!(!b.lookup(k.kid.as_str()).await.unwrap().unwrap().key.revoked);

    server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]).unwrap();
    a.revoke_key(k.kid.as_str()).await.unwrap();
    let seen = time_until(&b, k.kid.as_str(), |e| e.key.revoked).await;
    eprintln!("pub/sub killed: revoke seen after {seen:?}");
    assert!(seen < Duration::from_secs(1));

    // And the subscriber comes back by itself.
    wait_subscribed(&b).await;
    let k2 = new_key("acme");
    a.add_key(k2.clone()).await.unwrap();
    assert!(b.lookup(k2.kid.as_str()).await.unwrap().is_some());
    a.revoke_key(k2.kid.as_str()).await.unwrap();
    let seen = time_until(&b, k2.kid.as_str(), |e| e.key.revoked).await;
    assert!(seen < Duration::from_millis(500), "{seen:?}");
}

#[tokio::test]
async fn redis_down_serves_verified_keys_and_recovers() {
    // Always a private server, even with LIVEGATE_TEST_REDIS_URL: it is killed.
    let mut server = common::Server::start(&["--requirepass", "pw-not-to-leak"]);
    let url = format!("redis://:pw-not-to-leak@127.0.0.1:{}/0", server.port);
    // Default settings: the 50 ms command timeout.
    let store = RedisStore::new(&url, RedisSettings::default()).unwrap();
    store.create_tenant(Tenant::new("acme")).await.unwrap();
    let k = new_key("acme");
    store.add_key(k.clone()).await.unwrap();
    assert!(store.lookup(k.kid.as_str()).await.unwrap().is_some());
    assert!(store.health().await.ok);

    server.kill();

    // Past the TTL, the verified key is still served...
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = store.lookup(k.kid.as_str()).await.unwrap().unwrap();
    assert_eq!(e.key.kid, k.kid);
    // ...an unseen kid is Unavailable, quickly (not 401)...
    for _ in 0..3 {
        let start = Instant::now();
        let r = store.lookup("unseen000000").await;
        let took = start.elapsed();
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(took < Duration::from_millis(150), "{took:?}");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // ...and health says so without the URL or password.
    let h = store.health().await;
    assert_eq!((h.backend, h.ok), ("redis", false));
    let detail = h.detail.unwrap_or_default();
    assert!(
        !detail.is_empty() && !detail.contains("pw-not-to-leak") && !detail.contains("redis://")
    );
    eprintln!("health while down: {detail}");
    // Writes fail as unavailable too.
    assert!(store.create_tenant(Tenant::new("beta")).await.is_err());

    // Same port again: recovery without rebuilding the store.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.health().await.ok {
        assert!(Instant::now() < deadline, "did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store.lookup("unseen000000").await.unwrap().is_none());
    // The restarted Redis is empty (no persistence): the key is gone, and
    // the refreshed cache says so.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert!(store.lookup(k.kid.as_str()).await.unwrap().is_none());
    store.create_tenant(Tenant::new("acme")).await.unwrap();
    store.add_key(k.clone()).await.unwrap();
    assert!(store.lookup(k.kid.as_str()).await.unwrap().is_some());
}

#[tokio::test]
async fn a_store_built_while_redis_is_down_starts_working_when_it_comes_up() {
    let port = common::free_port();
    let store = RedisStore::new(
        &format!("redis://127.0.0.1:{port}/0"),
        RedisSettings::default(),
    )
    .unwrap();
    assert!(matches!(
        store.lookup("aaaaaaaaaaaa").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(!store.health().await.ok);

    let _server = common::Server::start_on(port, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.health().await.ok {
        assert!(Instant::now() < deadline, "did not connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store.lookup("aaaaaaaaaaaa").await.unwrap().is_none());
    wait_subscribed(&store).await;
}

#[tokio::test]
async fn a_touch_neither_publishes_nor_drops_another_replicas_cache() {
    let t = common::target();
    let a = RedisStore::new(&t.url, t.settings()).unwrap();
    let b = RedisStore::new(&t.url, t.settings()).unwrap();
    wait_subscribed(&b).await;
    a.create_tenant(Tenant::new("acme")).await.unwrap();
    let k = new_key("acme");
    let kid = k.kid.as_str();
    a.add_key(k.clone()).await.unwrap();
    // Let b handle the add's invalidation before its cache is warmed.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let client = redis::Client::open(t.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let record_key = format!("{}:{{t:acme}}:key:{kid}", t.prefix);
    let raw = |mut c: redis::aio::MultiplexedConnection| {
        let key = record_key.clone();
        async move {
            redis::cmd("GET")
                .arg(key)
                .query_async::<String>(&mut c)
                .await
                .unwrap()
        }
    };
    let before = raw(conn.clone()).await;
    let channel = format!("{}:invalidate", t.prefix);
    let mut listener = client.get_async_pubsub().await.unwrap();
    listener.subscribe(&channel).await.unwrap();

    // Sub-second parts are dropped: the stored time is whole seconds.
    let at =
        |secs: u64| Timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(secs * 1000 + 500));
    let text =
        |secs: u64| Timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)).to_string();

    // b keeps serving its cached record after a's touch (it may take a
    // few attempts on a loaded machine to stay inside b's cache TTL).
    let mut last = 0;
    let mut shown = false;
    for attempt in 0..5 {
        last = 1_800_000_000 + 60 * attempt;
        let warmed = Instant::now();
        let cached = b.lookup(kid).await.unwrap().unwrap();
        a.touch(kid, at(last)).await.unwrap();
        // Time for an invalidation, were one published, to reach b.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let again = b.lookup(kid).await.unwrap().unwrap();
        if warmed.elapsed() < Duration::from_millis(800) {
            assert!(
                Arc::ptr_eq(&cached.key, &again.key),
                "b's entry was dropped"
            );
            shown = true;
            break;
        }
    }
    assert!(shown, "never inside the cache ttl");

    // Only that field changed, the rest of the text byte for byte.
    let after = raw(conn.clone()).await;
    let expected = format!(
        r#"{},"last_used_at":"{}"}}"#,
        &before[..before.len() - 1],
        text(last)
    );
    assert_eq!(after, expected);
    // An older time changes nothing.
    a.touch(kid, at(last - 60)).await.unwrap();
    a.touch(kid, at(last)).await.unwrap();
    assert_eq!(raw(conn.clone()).await, expected);

    // Nothing was published: the listener's first message is ours.
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg("k:000000000000")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut messages = listener.on_message();
    let first = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.get_payload::<String>().unwrap(), "k:000000000000");
    drop(messages);

    // Every replica reads it at its next refresh.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let seen = b.lookup(kid).await.unwrap().unwrap();
    let touched = KeyRecord {
        last_used_at: Some(Timestamp(
            SystemTime::UNIX_EPOCH + Duration::from_secs(last),
        )),
        ..k.clone()
    };
    assert_eq!(*seen.key, touched);

    // A record edited by hand (other spacing, or a null) is still updated,
    // and still readable.
    let pretty = serde_json::to_string_pretty(&touched).unwrap();
    let null = format!(r#"{},"last_used_at":null}}"#, &before[..before.len() - 1]);
    for (i, edited) in [pretty, null].into_iter().enumerate() {
        let _: () = redis::cmd("SET")
            .arg(&record_key)
            .arg(&edited)
            .query_async(&mut conn)
            .await
            .unwrap();
        let secs = last + 600 * (i as u64 + 1);
        a.touch(kid, at(secs)).await.unwrap();
        let stored: KeyRecord = serde_json::from_str(&raw(conn.clone()).await).unwrap();
        let expected = KeyRecord {
            last_used_at: Some(Timestamp(
                SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            )),
            ..k.clone()
        };
        assert_eq!(stored, expected, "{edited}");
    }

    // A kid that is not there: no error, nothing written.
    a.touch("zzzzzzzzzzzz", at(last)).await.unwrap();
    assert!(b.lookup("zzzzzzzzzzzz").await.unwrap().is_none());
}
