//! Crash consistency: Redis is SIGKILLed in the middle of a burst of
//! concurrent admin writes (persisted with an AOF fsynced on every write),
//! then restarted from that AOF. Every write in flight fails with a
//! `StoreError` (a 503, never a panic), nothing is half-written (every
//! record parses and resolves, every rotation is all or nothing, an index
//! entry without its record is ignored), every write that returned Ok is
//! still there, and the store works as before.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::contract::{at, new_key};
use livegate_auth::{
    AdminError, KeyAdmin, KeyRecord, KeyStore, RedisSettings, RedisStore, Tenant, TenantUpdate,
};

const PREFIX: &str = "crash";
const TASKS: usize = 4;
/// Upper bound on one task's operations; the kill comes long before.
const MAX_OPS: usize = 400;

fn settings() -> RedisSettings {
    RedisSettings {
        prefix: PREFIX.to_owned(),
        // Generous on a loaded 2-core machine: only the kill should fail a
        // write (a timeout would be handled the same way, just earlier).
        command_timeout: Duration::from_secs(5),
        ..RedisSettings::default()
    }
}

/// A small seeded generator (splitmix64), so each run picks the same
/// sequence of operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn tenant_id(i: usize) -> String {
    format!("t{i}")
}

/// What one task owns: its tenant (only it updates or disables it) and the
/// keys it added (in any tenant; only it revokes or rotates them).
#[derive(Debug, Clone, PartialEq)]
struct Owned {
    tenant: Tenant,
    keys: BTreeMap<String, KeyRecord>,
}

#[derive(Debug, Clone)]
enum Op {
    Add(KeyRecord),
    Rotate(String, KeyRecord, livegate_core::Timestamp),
    Revoke(String),
    Update(TenantUpdate, livegate_core::Timestamp),
    Disable(bool, livegate_core::Timestamp),
}

impl Owned {
    /// The state once `op` is applied, as the store must leave it.
    fn apply(&self, op: &Op) -> Self {
        let mut s = self.clone();
        match op {
            Op::Add(k) => {
                s.keys.insert(k.kid.as_str().to_owned(), k.clone());
            }
            Op::Rotate(old, new, exp) => {
                let o = s.keys.get_mut(old).unwrap();
                o.expires_at = Some(o.expires_at.map_or(*exp, |e| e.min(*exp)));
                let mut new = new.clone();
                new.tenant_id.clone_from(&o.tenant_id);
                s.keys.insert(new.kid.as_str().to_owned(), new);
            }
            Op::Revoke(kid) => s.keys.get_mut(kid).unwrap().revoked = true,
            Op::Update(u, when) => u.apply(&mut s.tenant, *when),
            Op::Disable(d, when) => {
                s.tenant.disabled = *d;
                s.tenant.updated_at = Some(*when);
            }
        }
        s
    }

    fn kids(&self) -> impl Iterator<Item = &String> {
        self.keys.keys()
    }
}

/// How a task ended: its state with every Ok'd operation applied and, when
/// an operation failed, the state had that one been applied too (it may
/// or may not have reached Redis).
struct Outcome {
    task: usize,
    done: Owned,
    maybe: Option<(Op, Owned)>,
    ok_ops: usize,
}

async fn run_task(
    store: Arc<RedisStore>,
    task: usize,
    seed: u64,
    ok_count: Arc<AtomicUsize>,
) -> Outcome {
    let mut rng = Rng(seed ^ (task as u64).wrapping_mul(0x1234_5678_9abc_def1));
    let mut state = Owned {
        tenant: Tenant::new(tenant_id(task)),
        keys: BTreeMap::new(),
    };
    let tid = tenant_id(task);
    let mut disabled = false;
    for step in 0..MAX_OPS {
        let when = at(1_900_000_000 + (task as u64) * 100_000 + step as u64);
        let live: Vec<String> = state
            .keys
            .values()
            .filter(|k| !k.revoked)
            .map(|k| k.kid.as_str().to_owned())
            .collect();
        let roll = rng.below(100);
        let op = if live.is_empty() || roll < 30 {
            Op::Add(new_key(&tenant_id(rng.below(TASKS))).0)
        } else if roll < 50 {
            let old = live[rng.below(live.len())].clone();
            let mut new = new_key("placeholder").0;
            new.rotated_from = Some(state.keys[&old].kid.clone());
            Op::Rotate(old, new, when)
        } else if roll < 65 {
            let all: Vec<&String> = state.kids().collect();
            Op::Revoke(all[rng.below(all.len())].clone())
        } else if roll < 85 {
            let update = TenantUpdate {
                name: Some(format!("{tid} step {step}")),
                monthly_quota: Some(step as u64),
                ..TenantUpdate::default()
            };
            Op::Update(update, when)
        } else {
            disabled = !disabled;
            Op::Disable(disabled, when)
        };
        let next = state.apply(&op);
        let result: Result<(), AdminError> = match &op {
            Op::Add(k) => store.add_key(k.clone()).await.map(|r| assert_eq!(&r, k)),
            Op::Rotate(old, new, exp) => store
                .rotate_key(old, new.clone(), *exp)
                .await
                .map(|r| assert_eq!(r, next.keys[old])),
            Op::Revoke(kid) => store
                .revoke_key(kid)
                .await
                .map(|r| assert_eq!(r, next.keys[kid])),
            Op::Update(u, when) => store
                .update_tenant(&tid, u.clone(), *when)
                .await
                .map(|t| assert_eq!(t, next.tenant)),
            Op::Disable(d, when) => store
                .set_tenant_disabled(&tid, *d, *when)
                .await
                .map(|t| assert_eq!(t, next.tenant)),
        };
        match result {
            Ok(()) => {
                state = next;
                ok_count.fetch_add(1, Ordering::SeqCst);
            }
            // Redis went away: a 503, and this task is done.
            Err(AdminError::Store(_)) => {
                return Outcome {
                    task,
                    done: state,
                    maybe: Some((op, next)),
                    ok_ops: step,
                };
            }
            Err(e) => panic!("task {task}: {op:?} failed with {e:?}, not a store error"),
        }
    }
    Outcome {
        task,
        done: state,
        maybe: None,
        ok_ops: MAX_OPS,
    }
}

/// Everything under the prefix, read straight from Redis and sorted out.
#[derive(Debug, Default)]
struct Stored {
    tenants_set: BTreeSet<String>,
    /// tenant id → its record's text.
    tenants: BTreeMap<String, String>,
    /// tenant id → its kid set.
    kid_sets: BTreeMap<String, BTreeSet<String>>,
    /// (tenant id, kid) → the record's text.
    records: BTreeMap<(String, String), String>,
    /// kid → tenant id.
    index: BTreeMap<String, String>,
}

async fn read_stored(url: &str) -> Stored {
    let mut s = Stored::default();
    for (key, value) in common::dump(url, PREFIX).await {
        let rest = key.strip_prefix(&format!("{PREFIX}:")).unwrap();
        let set = || -> BTreeSet<String> {
            value
                .split(',')
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect()
        };
        if rest == "tenants" {
            s.tenants_set = set();
        } else if let Some(kid) = rest.strip_prefix("kid:") {
            s.index.insert(kid.to_owned(), value);
        } else if let Some(tagged) = rest.strip_prefix("{t:") {
            let (tenant, what) = tagged.split_once("}:").unwrap();
            let tenant = tenant.to_owned();
            if what == "tenant" {
                s.tenants.insert(tenant, value);
            } else if what == "keys" {
                s.kid_sets.insert(tenant, set());
            } else if let Some(kid) = what.strip_prefix("key:") {
                s.records.insert((tenant, kid.to_owned()), value);
            } else {
                panic!("unexpected key {key}");
            }
        } else {
            panic!("unexpected key {key}");
        }
    }
    s
}

/// The invariants after the restart, checked on the raw data and through a
/// fresh store; returns every key record by kid.
async fn check_consistent(url: &str, store: &RedisStore) -> BTreeMap<String, KeyRecord> {
    let s = read_stored(url).await;
    let mut tenants = BTreeMap::new();
    for (id, raw) in &s.tenants {
        let t: Tenant = serde_json::from_str(raw)
            .unwrap_or_else(|e| panic!("tenant {id} does not parse ({e}): {raw}"));
        assert_eq!(&t.id, id, "tenant record under another id");
        assert!(s.tenants_set.contains(id), "tenant {id} not listed");
        tenants.insert(id.clone(), t);
    }
    let mut records = BTreeMap::new();
    for ((tenant, kid), raw) in &s.records {
        let k: KeyRecord = serde_json::from_str(raw)
            .unwrap_or_else(|e| panic!("key record {kid} does not parse ({e}): {raw}"));
        assert_eq!(k.kid.as_str(), kid, "record stored under another kid");
        assert_eq!(&k.tenant_id, tenant, "record stored under another tenant");
        let owner = tenants
            .get(tenant)
            .unwrap_or_else(|| panic!("key {kid} names tenant {tenant}, which does not exist"));
        assert!(
            s.kid_sets.get(tenant).is_some_and(|set| set.contains(kid)),
            "key {kid} missing from the kid set of {tenant}"
        );
        assert_eq!(
            s.index.get(kid),
            Some(tenant),
            "key {kid} of {tenant} not indexed to it"
        );
        let entry = store
            .lookup(kid)
            .await
            .unwrap_or_else(|e| panic!("lookup of {kid} failed: {e}"))
            .unwrap_or_else(|| panic!("key {kid} of {tenant} stored but not found"));
        assert_eq!(*entry.key, k, "lookup of {kid} returned another record");
        assert_eq!(
            *entry.tenant, *owner,
            "lookup of {kid} returned another tenant"
        );
        assert!(records.insert(kid.clone(), k).is_none(), "kid {kid} twice");
    }
    for (tenant, set) in &s.kid_sets {
        for kid in set {
            assert!(
                s.records.contains_key(&(tenant.clone(), kid.clone())),
                "kid set of {tenant} lists {kid}, which has no record"
            );
        }
    }
    // An index entry whose record never got written (the write after it
    // was cut off) points at nothing, and a lookup says so: no error, no
    // half record.
    let mut dangling = 0;
    for (kid, tenant) in &s.index {
        if !s.records.contains_key(&(tenant.clone(), kid.clone())) {
            dangling += 1;
            let found = store
                .lookup(kid)
                .await
                .unwrap_or_else(|e| panic!("lookup of dangling {kid} failed: {e}"));
            assert!(found.is_none(), "dangling index entry {kid} resolved");
        }
    }
    eprintln!(
        "{} key records, {dangling} dangling index entries",
        records.len()
    );
    // A rotation is all or nothing: the new key's predecessor is there,
    // with its shortened expiry.
    for k in records.values() {
        if let Some(old) = &k.rotated_from {
            let o = records.get(old.as_str()).unwrap_or_else(|| {
                panic!(
                    "{} rotated from {}, which is missing",
                    k.kid.as_str(),
                    old.as_str()
                )
            });
            assert_eq!(o.tenant_id, k.tenant_id, "rotation changed tenant");
            assert!(
                o.expires_at.is_some(),
                "{} was rotated into {} but has no expiry: half a rotation",
                old.as_str(),
                k.kid.as_str()
            );
        }
    }
    records
}

async fn crash_after(kill_at: usize, seed: u64) {
    // Always a private server, even with LIVEGATE_TEST_REDIS_URL: it is killed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_owned();
    let mut server = common::Server::start(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        &path,
    ]);
    let appendonly = server.cli(&["CONFIG", "GET", "appendonly"]).unwrap();
    assert!(appendonly.contains("yes"), "{appendonly}");
    let url = server.url();

    let store = Arc::new(RedisStore::new(&url, settings()).unwrap());
    for i in 0..TASKS {
        store
            .create_tenant(Tenant::new(tenant_id(i)))
            .await
            .unwrap();
    }

    let ok_count = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| tokio::spawn(run_task(store.clone(), i, seed, ok_count.clone())))
        .collect();
    // The kill: as soon as `kill_at` operations have returned Ok, with the
    // others in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ok_count.load(Ordering::SeqCst) < kill_at && !tasks.iter().all(|t| t.is_finished()) {
        assert!(Instant::now() < deadline, "the burst stalled");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let killed_at = ok_count.load(Ordering::SeqCst);
    server.kill();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("an admin call panicked"));
    }
    let total: usize = outcomes.iter().map(|o| o.ok_ops).sum();
    let cut: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.maybe.as_ref().map(|(op, _)| format!("{op:?}")))
        .collect();
    eprintln!(
        "killed after {killed_at} ok operations ({total} in all); cut off: {}",
        cut.len()
    );
    assert!(killed_at >= kill_at, "writes failed before the kill");
    assert!(
        outcomes.iter().all(|o| o.maybe.is_some()),
        "every task ends on a failed write"
    );
    drop(store);

    // Same port, same dir: the AOF is replayed.
    server.restart();
    let fresh = RedisStore::new(&url, settings()).unwrap();
    let records = check_consistent(&url, &fresh).await;

    // Every write that returned Ok is there; the one cut off in each task
    // is there entirely or not at all.
    let stored = read_stored(&url).await;
    let mut claimed = BTreeSet::new();
    let mut landed = 0;
    for o in &outcomes {
        let (op, maybe) = o.maybe.as_ref().unwrap();
        let kids: BTreeSet<&String> = o.done.kids().chain(maybe.kids()).collect();
        let raw = &stored.tenants[&tenant_id(o.task)];
        let actual = Owned {
            tenant: serde_json::from_str(raw).unwrap(),
            keys: kids
                .iter()
                .filter_map(|kid| records.get(*kid).map(|k| ((*kid).clone(), k.clone())))
                .collect(),
        };
        assert!(
            actual == o.done || actual == *maybe,
            "task {}: after the restart {actual:#?}\nexpected either (without the cut-off {op:?}) {:#?}\nor (with it) {maybe:#?}",
            o.task,
            o.done,
        );
        landed += usize::from(actual != o.done);
        claimed.extend(actual.keys.into_keys());
    }
    eprintln!("of the {} writes cut off, {landed} landed", outcomes.len());
    let unclaimed: Vec<&String> = records.keys().filter(|k| !claimed.contains(*k)).collect();
    assert!(unclaimed.is_empty(), "records nobody wrote: {unclaimed:?}");

    // And the store works as before.
    let (k, _) = new_key("t0");
    fresh.add_key(k.clone()).await.unwrap();
    let e = fresh.lookup(k.kid.as_str()).await.unwrap().unwrap();
    assert_eq!(*e.key, k);
    let (mut next, _) = new_key("t0");
    next.rotated_from = Some(k.kid.clone());
    fresh
        .rotate_key(k.kid.as_str(), next.clone(), at(2_000_000_000))
        .await
        .unwrap();
    assert!(fresh.lookup(next.kid.as_str()).await.unwrap().is_some());
    assert!(fresh.revoke_key(next.kid.as_str()).await.unwrap().revoked);
    check_consistent(&url, &fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_after_5_writes_leaves_nothing_half_written() {
    crash_after(5, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_after_20_writes_leaves_nothing_half_written() {
    crash_after(20, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_after_50_writes_leaves_nothing_half_written() {
    crash_after(50, 50).await;
}

/// The cut made exactly where it hurts: a Redis user that may write the kid
/// index but only read the tenants' records, so an issue and a rotation
/// each fail between their two writes (as they would if Redis died there),
/// and a revoke fails at its only write.
#[tokio::test]
async fn a_write_cut_between_index_and_record_leaves_only_a_dangling_index() {
    let server = common::Server::start(&[]);
    server
        .cli(&[
            "ACL",
            "SETUSER",
            "halfway",
            "on",
            ">halfway-pw",
            "resetkeys",
            "~crash:kid:*",
            "%R~crash:*",
            "&*",
            "+@all",
        ])
        .unwrap();
    let url = server.url();
    let admin = RedisStore::new(&url, settings()).unwrap();
    admin.create_tenant(Tenant::new("t0")).await.unwrap();
    let (old, _) = new_key("t0");
    admin.add_key(old.clone()).await.unwrap();

    let halfway_url = format!("redis://halfway:halfway-pw@127.0.0.1:{}/0", server.port);
    let halfway = RedisStore::new(&halfway_url, settings()).unwrap();
    let (k, _) = new_key("t0");
    let r = halfway.add_key(k.clone()).await;
    assert!(matches!(r, Err(AdminError::Store(_))), "{r:?}");
    let (mut next, _) = new_key("t0");
    next.rotated_from = Some(old.kid.clone());
    let r = halfway
        .rotate_key(old.kid.as_str(), next.clone(), at(2_000_000_000))
        .await;
    assert!(matches!(r, Err(AdminError::Store(_))), "{r:?}");
    let r = halfway.revoke_key(old.kid.as_str()).await;
    assert!(matches!(r, Err(AdminError::Store(_))), "{r:?}");

    // The first writes landed, the second ones did not: two index entries
    // point at nothing, and the old key is as it was.
    let stored = read_stored(&url).await;
    let indexed: BTreeSet<&str> = stored.index.keys().map(String::as_str).collect();
    let all = BTreeSet::from([old.kid.as_str(), k.kid.as_str(), next.kid.as_str()]);
    assert_eq!(indexed, all);
    let records = check_consistent(&url, &admin).await;
    assert_eq!(
        records,
        BTreeMap::from([(old.kid.as_str().to_owned(), old.clone())])
    );
    assert!(admin.lookup(k.kid.as_str()).await.unwrap().is_none());
    assert!(admin.lookup(next.kid.as_str()).await.unwrap().is_none());

    // Retried with a store that can write, both complete.
    admin.add_key(k.clone()).await.unwrap();
    admin
        .rotate_key(old.kid.as_str(), next.clone(), at(2_000_000_000))
        .await
        .unwrap();
    let records = check_consistent(&url, &admin).await;
    assert_eq!(records.len(), 3);
    assert_eq!(
        records[old.kid.as_str()].expires_at,
        Some(at(2_000_000_000))
    );
    assert_eq!(*admin.lookup(k.kid.as_str()).await.unwrap().unwrap().key, k);
    assert!(admin.lookup(next.kid.as_str()).await.unwrap().is_some());
}
