//! Several replicas on one Redis: a revoke or disable is honoured by every
//! replica within 1 s, through pub/sub and (with pub/sub broken) through
//! the cache TTL alone; and a Redis outage and recovery.

mod common;

use std::time::{Duration, Instant};

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
