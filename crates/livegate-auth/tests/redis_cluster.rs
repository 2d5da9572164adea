//! The store on a three-master Redis Cluster: the contract (a tenant's
//! multi-key scripts stay in one slot), no secret on any node, and
//! invalidation across replicas through cluster-wide pub/sub.

mod common;

use common::contract;

use std::time::{Duration, Instant};

use livegate_auth::{KeyAdmin, KeyStore, RedisSettings, RedisStore, Tenant};

#[tokio::test]
async fn redis_store_meets_the_contract_on_a_cluster() {
    let cluster = common::Cluster::start();
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    let settings = RedisSettings {
        command_timeout: Duration::from_millis(500),
        ..RedisSettings::default()
    };
    let a = RedisStore::new_cluster(&nodes, settings.clone()).unwrap();
    let plaintexts = contract::contract(&a).await;

    // Every node: records spread over the masters, and no secret anywhere.
    let mut all = String::new();
    let mut used = 0;
    for url in &urls {
        let dump = common::dump(url, "livegate").await;
        used += usize::from(!dump.is_empty());
        all.extend(dump.iter().map(|(k, v)| format!("{k}={v}\n")));
    }
    assert!(used >= 2, "records on {used} node(s) only:\n{all}");
    contract::assert_no_secret(&all, &plaintexts);

    // A second replica hears a revoke through cluster-wide pub/sub.
    let b = RedisStore::new_cluster(&nodes, settings).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.subscribed() {
        assert!(Instant::now() < deadline, "subscriber did not connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.create_tenant(Tenant::new("gamma")).await.unwrap();
    let (k, _) = contract::new_key("gamma");
    a.add_key(k.clone()).await.unwrap();
    assert!(!b.lookup(k.kid.as_str()).await.unwrap().unwrap().key.revoked);
    a.revoke_key(k.kid.as_str()).await.unwrap();
    let start = Instant::now();
    while !b.lookup(k.kid.as_str()).await.unwrap().unwrap().key.revoked {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = start.elapsed();
    eprintln!("cluster pub/sub: revoke seen after {seen:?}");
    assert!(seen < Duration::from_millis(500));
    assert!(b.health().await.ok);
}
