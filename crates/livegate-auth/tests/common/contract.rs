//! The `KeyStore` + `KeyAdmin` contract, shared by the test files that run
//! it against `MemoryStore`, a `RedisStore` and a `RedisStore` on a cluster.

use std::time::{Duration, SystemTime};

use livegate_auth::{
    AdminError, KeyAdmin, KeyRecord, KeyStore, Pepper, Tenant, TenantUpdate, generate, parse,
};
use livegate_core::Timestamp;

pub fn at(secs: u64) -> Timestamp {
    Timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

pub fn pepper() -> Pepper {
    Pepper::new("0123456789abcdef0123").unwrap()
}

/// A fresh key of `tenant`; also returns its plaintext, which a store must
/// never see.
pub fn new_key(tenant: &str) -> (KeyRecord, String) {
    let k = generate();
    let record = KeyRecord::new(k.kid.clone(), tenant, k.hash(&pepper()));
    (record, k.plaintext.expose().to_owned())
}

pub async fn lookup<S: KeyStore>(s: &S, kid: &str) -> Option<livegate_auth::KeyEntry> {
    s.lookup(kid).await.unwrap()
}

/// The contract; returns the plaintexts of every key it created.
pub async fn contract<S: KeyStore + KeyAdmin>(s: &S) -> Vec<String> {
    let mut plaintexts = Vec::new();

    // Tenants: create, duplicate, list order, get.
    let acme = s.create_tenant(Tenant::new("acme")).await.unwrap();
    assert_eq!(acme, Tenant::new("acme"));
    assert!(matches!(
        s.create_tenant(Tenant::new("acme")).await,
        Err(AdminError::TenantExists)
    ));
    s.create_tenant(Tenant::new("beta")).await.unwrap();
    s.create_tenant(Tenant::new("alpha")).await.unwrap();
    let ids: Vec<String> = s
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["acme", "alpha", "beta"]);
    assert_eq!(s.tenant("acme").await.unwrap(), acme);
    assert!(matches!(
        s.tenant("nope").await,
        Err(AdminError::TenantNotFound)
    ));

    // Update.
    let update = TenantUpdate {
        name: Some("Acme Inc".to_owned()),
        burst: Some(7),
        ..TenantUpdate::default()
    };
    let updated = s
        .update_tenant("acme", update.clone(), at(1_800_000_000))
        .await
        .unwrap();
    assert_eq!(updated.name.as_deref(), Some("Acme Inc"));
    assert_eq!(updated.settings.burst, Some(7));
    assert_eq!(updated.updated_at, Some(at(1_800_000_000)));
    assert_eq!(s.tenant("acme").await.unwrap(), updated);
    assert!(matches!(
        s.update_tenant("nope", update, at(1)).await,
        Err(AdminError::TenantNotFound)
    ));

    // Keys: unknown tenant, add, list order, lookup.
    let (stray, p) = new_key("nope");
    plaintexts.push(p);
    assert!(matches!(
        s.add_key(stray.clone()).await,
        Err(AdminError::TenantNotFound)
    ));
    assert!(lookup(s, stray.kid.as_str()).await.is_none());
    let mut added = Vec::new();
    for _ in 0..3 {
        let (k, p) = new_key("acme");
        plaintexts.push(p);
        assert_eq!(s.add_key(k.clone()).await.unwrap(), k);
        added.push(k);
    }
    added.sort_by(|a, b| a.kid.cmp(&b.kid));
    assert_eq!(s.keys("acme").await.unwrap(), added);
    assert!(s.keys("beta").await.unwrap().is_empty());
    assert!(matches!(
        s.keys("nope").await,
        Err(AdminError::TenantNotFound)
    ));
    let (k1, k2) = (added[0].clone(), added[1].clone());
    let e = lookup(s, k1.kid.as_str()).await.unwrap();
    assert_eq!(*e.key, k1);
    assert_eq!(*e.tenant, updated);
    assert!(lookup(s, "zzzzzzzzzzzz").await.is_none());

    // Touch: sets only the last use, only forwards, read back from the
    // store itself (a cached lookup need not see it: nothing invalidates).
    let listed = |keys: Vec<KeyRecord>, kid: &KeyRecord| {
        keys.into_iter().find(|k| k.kid == kid.kid).unwrap()
    };
    s.touch(k1.kid.as_str(), at(1_800_000_300)).await.unwrap();
    let touched = KeyRecord {
        last_used_at: Some(at(1_800_000_300)),
        ..k1.clone()
    };
    assert_eq!(listed(s.keys("acme").await.unwrap(), &k1), touched);
    assert_eq!(listed(s.keys("acme").await.unwrap(), &k2), k2);
    s.touch(k1.kid.as_str(), at(1_800_000_200)).await.unwrap();
    s.touch(k1.kid.as_str(), at(1_800_000_300)).await.unwrap();
    assert_eq!(listed(s.keys("acme").await.unwrap(), &k1), touched);
    s.touch(k1.kid.as_str(), at(1_800_000_360)).await.unwrap();
    let touched = KeyRecord {
        last_used_at: Some(at(1_800_000_360)),
        ..k1.clone()
    };
    assert_eq!(listed(s.keys("acme").await.unwrap(), &k1), touched);
    // An unknown kid is no error, and creates nothing.
    s.touch("zzzzzzzzzzzz", at(1_800_000_360)).await.unwrap();
    assert!(lookup(s, "zzzzzzzzzzzz").await.is_none());
    assert_eq!(s.keys("acme").await.unwrap().len(), 3);

    // Disable and enable: seen by the next lookup.
    let disabled = s
        .set_tenant_disabled("acme", true, at(1_800_000_100))
        .await
        .unwrap();
    assert!(disabled.disabled);
    assert_eq!(disabled.updated_at, Some(at(1_800_000_100)));
    assert!(lookup(s, k1.kid.as_str()).await.unwrap().tenant.disabled);
    s.set_tenant_disabled("acme", false, at(1_800_000_200))
        .await
        .unwrap();
    assert!(!lookup(s, k1.kid.as_str()).await.unwrap().tenant.disabled);
    assert!(matches!(
        s.set_tenant_disabled("nope", true, at(1)).await,
        Err(AdminError::TenantNotFound)
    ));

    // Revoke: idempotent, seen by the next lookup; keeps the last use.
    let revoked = s.revoke_key(k1.kid.as_str()).await.unwrap();
    assert_eq!(
        revoked,
        KeyRecord {
            revoked: true,
            ..touched
        }
    );
    assert!(s.revoke_key(k1.kid.as_str()).await.unwrap().revoked);
    assert!(lookup(s, k1.kid.as_str()).await.unwrap().key.revoked);
    assert!(matches!(
        s.revoke_key("zzzzzzzzzzzz").await,
        Err(AdminError::KeyNotFound)
    ));

    // Rotate: refused for a revoked or unknown key; otherwise the new key
    // and the old key's shortened expiry together.
    let (mut k3, p) = new_key("acme");
    plaintexts.push(p);
    k3.rotated_from = Some(k2.kid.clone());
    assert!(matches!(
        s.rotate_key(k1.kid.as_str(), k3.clone(), at(1_900_000_000))
            .await,
        Err(AdminError::KeyRevoked)
    ));
    assert!(
        lookup(s, k3.kid.as_str()).await.is_none(),
        "a refused rotation wrote nothing"
    );
    assert!(matches!(
        s.rotate_key("zzzzzzzzzzzz", k3.clone(), at(1_900_000_000))
            .await,
        Err(AdminError::KeyNotFound)
    ));
    let old = s
        .rotate_key(k2.kid.as_str(), k3.clone(), at(1_900_000_000))
        .await
        .unwrap();
    assert_eq!(old.kid, k2.kid);
    assert_eq!(old.expires_at, Some(at(1_900_000_000)));
    assert_eq!(
        lookup(s, k2.kid.as_str()).await.unwrap().key.expires_at,
        Some(at(1_900_000_000))
    );
    let new = lookup(s, k3.kid.as_str()).await.unwrap();
    assert_eq!(*new.key, k3);
    // A later expiry does not lengthen the earlier one.
    let (k4, p) = new_key("acme");
    plaintexts.push(p);
    let old = s
        .rotate_key(k2.kid.as_str(), k4.clone(), at(2_000_000_000))
        .await
        .unwrap();
    assert_eq!(old.expires_at, Some(at(1_900_000_000)));
    assert_eq!(s.keys("acme").await.unwrap().len(), 5);

    plaintexts
}

/// `dump` holds no plaintext key and no 12-character run of any secret.
pub fn assert_no_secret(dump: &str, plaintexts: &[String]) {
    assert!(!dump.contains("lvg_"), "{dump}");
    for p in plaintexts {
        let secret = parse(p).unwrap().secret;
        for window in secret.as_bytes().windows(12) {
            let fragment = std::str::from_utf8(window).unwrap();
            assert!(!dump.contains(fragment), "secret fragment stored: {dump}");
        }
    }
}
