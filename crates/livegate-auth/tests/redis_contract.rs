//! The `KeyStore` + `KeyAdmin` contract, run against `MemoryStore` and
//! against `RedisStore` on a private `redis-server`, so both behave the
//! same; plus what only Redis can show (orphans made by hand, and that no
//! secret is ever stored).

mod common;

use std::time::Duration;

use common::contract::{assert_no_secret, contract, lookup, new_key};
use livegate_auth::{KeyAdmin, KeyStore, MemoryStore, RedisStore, StoreError, Tenant};

#[tokio::test]
async fn memory_store_meets_the_contract() {
    contract(&MemoryStore::new()).await;
}

#[tokio::test]
async fn redis_store_meets_the_contract_and_stores_no_secret() {
    let t = common::target();
    let store = RedisStore::new(&t.url, t.settings()).unwrap();
    let plaintexts = contract(&store).await;

    // Every key and value in Redis: hashes, never a plaintext key or a
    // fragment of a secret.
    let dump = common::dump(&t.url, &t.prefix).await;
    assert!(dump.len() > 10, "{dump:?}");
    let all: String = dump.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    assert_no_secret(&all, &plaintexts);
    let stored = store.keys("acme").await.unwrap();
    assert!(
        all.contains(&stored[0].hash.to_string()),
        "records hold the hash"
    );
}

#[tokio::test]
async fn a_key_whose_tenant_is_gone_is_no_credential() {
    let memory = MemoryStore::new();
    let (orphan, _) = new_key("gone");
    memory.put_key(orphan.clone());
    assert!(lookup(&memory, orphan.kid.as_str()).await.is_none());

    let t = common::target();
    let store = RedisStore::new(&t.url, t.settings()).unwrap();
    store.create_tenant(Tenant::new("gone")).await.unwrap();
    let (orphan, _) = new_key("gone");
    store.add_key(orphan.clone()).await.unwrap();
    assert!(lookup(&store, orphan.kid.as_str()).await.is_some());
    // Tenants cannot be deleted through the API: do it by hand.
    let client = redis::Client::open(t.url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let tenant_key = format!("{}:{{t:gone}}:tenant", t.prefix);
    let deleted: i64 = redis::cmd("DEL")
        .arg(&tenant_key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    // A second store has nothing cached; the first sees it within the TTL.
    let fresh = RedisStore::new(&t.url, t.settings()).unwrap();
    assert!(lookup(&fresh, orphan.kid.as_str()).await.is_none());
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert!(lookup(&store, orphan.kid.as_str()).await.is_none());
}

#[tokio::test]
async fn bad_url_and_wrong_password_reveal_no_secret() {
    let err = RedisStore::new("redis://:hunter2pw@[not a host", Default::default()).unwrap_err();
    let StoreError::Unavailable(msg) = err;
    assert!(!msg.contains("hunter2pw"), "{msg}");

    let server = common::Server::start(&["--requirepass", "rightpassword"]);
    let url = format!("redis://:wrongpassword@127.0.0.1:{}/0", server.port);
    let store = RedisStore::new(&url, Default::default()).unwrap();
    let h = store.health().await;
    assert_eq!((h.backend, h.ok), ("redis", false));
    let detail = h.detail.unwrap();
    assert!(
        !detail.contains("wrongpassword") && !detail.contains("redis://"),
        "{detail}"
    );
    assert!(!format!("{store:?}").contains("wrongpassword"));
    assert!(matches!(
        store.lookup("aaaaaaaaaaaa").await,
        Err(StoreError::Unavailable(_))
    ));

    let url = format!("redis://:rightpassword@127.0.0.1:{}/0", server.port);
    let store = RedisStore::new(&url, Default::default()).unwrap();
    assert!(store.health().await.ok);
    assert!(store.lookup("aaaaaaaaaaaa").await.unwrap().is_none());
}
