//! The protection stores' contract, run against `MemoryStore` (on paused
//! time) and a `RedisStore` on a private `redis-server` (on real time),
//! plus what only Redis can show: key layout, trimming, TTLs, a Cluster,
//! and a Redis that is down or stalled.

#[path = "../../livegate-auth/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Cluster, Server};
use livegate_protect::store::{
    Claim, Fingerprint, IdempotencyStore, MAX_DISTANCE, RedisStore, ReplayMatch, ReplayStore,
    StoreError, StoredAnswer,
};
use livegate_redis::Backend;
use tokio::time::{Instant, sleep};

/// Per round trip: a loaded 2-core test machine, not the production bound.
const TIMEOUT: Duration = Duration::from_millis(500);
const HOUR: Duration = Duration::from_secs(3600);
/// Windows, leases and retentions that a test waits out.
const SHORT: Duration = Duration::from_millis(300);
const PAST_SHORT: Duration = Duration::from_millis(450);
const BASE: u64 = 0x0123_4567_89ab_cdef;

fn redis_store(url: &str) -> RedisStore {
    RedisStore::new(Backend::from_url(url, TIMEOUT).unwrap(), TIMEOUT)
}

/// Each scenario against both stores: `name::memory` and `name::redis`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(start_paused = true)]
            async fn memory() {
                super::$name(&livegate_protect::store::MemoryStore::new()).await;
            }

            #[tokio::test]
            async fn redis() {
                let server = super::Server::start(&[]);
                super::$name(&super::redis_store(&server.url())).await;
            }
        }
    )*};
}

both!(
    exact_replay,
    perceptual_distances,
    perceptual_band_limit,
    nearest_and_exact_preferred,
    replay_window_expiry,
    idempotent_answer,
    mismatch_never_overwrites,
    concurrent_claims,
    release_wakes_a_waiter,
    lease_expiry,
    wait_elapsed_is_busy,
    retention_expiry,
);

fn fp(n: u8, phash: Option<u64>) -> Fingerprint {
    Fingerprint {
        sha256: [n; 32],
        phash,
    }
}

/// `BASE` with one bit flipped in each band in `bands` (so the two hashes
/// differ in exactly those bands).
fn flip_bands(bands: impl IntoIterator<Item = u32>) -> u64 {
    bands
        .into_iter()
        .fold(BASE, |h, band| h ^ (1 << (band * 8 + band % 8)))
}

async fn find(s: &dyn ReplayStore, scope: &str, f: Fingerprint, max: u32) -> Option<ReplayMatch> {
    s.find(scope, &f, max).await.unwrap()
}

/// Records `f` under `tx` for an hour.
async fn record(s: &dyn ReplayStore, scope: &str, f: Fingerprint, tx: &str) {
    s.record(scope, &f, tx, HOUR).await.unwrap();
}

fn found(tx: &str, exact: bool, distance: u32) -> Option<ReplayMatch> {
    Some(ReplayMatch {
        transaction_id: tx.to_owned(),
        exact,
        distance,
    })
}

async fn exact_replay(s: &dyn ReplayStore) {
    record(s, "acme", fp(1, Some(BASE)), "tx-1").await;
    record(s, "acme", fp(1, Some(BASE)), "tx-2").await;
    // The same bytes again: the first transaction, even with no hash.
    assert_eq!(
        find(s, "acme", fp(1, Some(BASE)), 7).await,
        found("tx-1", true, 0)
    );
    assert_eq!(
        find(s, "acme", fp(1, None), 0).await,
        found("tx-1", true, 0)
    );
    // Not in another scope, exactly or perceptually.
    assert_eq!(find(s, "other", fp(1, Some(BASE)), 7).await, None);

    // An image without a perceptual hash is remembered by digest only.
    record(s, "acme", fp(2, None), "tx-3").await;
    assert_eq!(
        find(s, "acme", fp(2, None), 7).await,
        found("tx-3", true, 0)
    );
    assert_eq!(
        find(s, "acme", fp(2, Some(0)), 7).await,
        found("tx-3", true, 0)
    );
    assert_eq!(find(s, "other", fp(2, None), 7).await, None);
    // A new digest with no hash finds nothing, whatever is stored.
    assert_eq!(find(s, "acme", fp(3, None), 7).await, None);
}

async fn perceptual_distances(s: &dyn ReplayStore) {
    record(s, "acme", fp(1, Some(BASE)), "tx-base").await;
    // d bits apart, in d different bands: only bands d.. agree.
    for d in 0..=MAX_DISTANCE {
        let q = flip_bands(0..d);
        assert_eq!((q ^ BASE).count_ones(), d);
        assert_eq!(
            find(s, "acme", fp(9, Some(q)), MAX_DISTANCE).await,
            found("tx-base", false, d),
            "distance {d}"
        );
    }
    // 8 bits apart: one in every band, or all in one band (a candidate
    // from the other bands' buckets, too far).
    let spread = flip_bands(0..8);
    assert_eq!(find(s, "acme", fp(9, Some(spread)), 7).await, None);
    let one_band = BASE ^ 0xff00;
    assert_eq!(find(s, "acme", fp(9, Some(one_band)), 7).await, None);
    // Another scope sees none of it.
    assert_eq!(find(s, "other", fp(9, Some(BASE)), 7).await, None);
}

async fn perceptual_band_limit(s: &dyn ReplayStore) {
    record(s, "acme", fp(1, Some(BASE)), "tx-base").await;
    // max_distance 3 finds 3 (in whichever bands), not 4.
    for bands in [[0, 1, 2], [1, 2, 3], [5, 6, 7]] {
        let q = flip_bands(bands);
        assert_eq!(
            find(s, "acme", fp(9, Some(q)), 3).await,
            found("tx-base", false, 3),
            "{bands:?}"
        );
    }
    assert_eq!(
        find(s, "acme", fp(9, Some(flip_bands(0..4))), 3).await,
        None
    );
    assert_eq!(
        find(s, "acme", fp(9, Some(flip_bands(4..8))), 3).await,
        None
    );
    assert_eq!(find(s, "acme", fp(9, Some(BASE ^ 0b1111)), 3).await, None);
    // max_distance 0: the same hash only.
    assert_eq!(
        find(s, "acme", fp(9, Some(BASE)), 0).await,
        found("tx-base", false, 0)
    );
    assert_eq!(find(s, "acme", fp(9, Some(BASE ^ 1)), 0).await, None);
}

async fn nearest_and_exact_preferred(s: &dyn ReplayStore) {
    let q = BASE;
    record(s, "acme", fp(1, Some(q ^ 0b11111)), "tx-far").await;
    record(s, "acme", fp(2, Some(q ^ (0b11 << 40))), "tx-near").await;
    record(s, "acme", fp(3, Some(q ^ 0xf000_0000)), "tx-mid").await;
    assert_eq!(
        find(s, "acme", fp(9, Some(q)), 7).await,
        found("tx-near", false, 2)
    );
    // A tie goes to the earlier recorded (named so that name order would
    // pick the later one).
    record(s, "acme", fp(4, Some(q ^ (0b11 << 8))), "tx-a-later").await;
    assert_eq!(
        find(s, "acme", fp(9, Some(q)), 7).await,
        found("tx-near", false, 2)
    );

    // Same hash as tx-first but other bytes; exact wins over an earlier
    // perceptual match at distance 0.
    record(s, "acme", fp(5, Some(q)), "tx-first").await;
    record(s, "acme", fp(6, Some(q)), "tx-second").await;
    assert_eq!(
        find(s, "acme", fp(6, Some(q)), 7).await,
        found("tx-second", true, 0)
    );
    assert_eq!(
        find(s, "acme", fp(9, Some(q)), 7).await,
        found("tx-first", false, 0)
    );
}

async fn replay_window_expiry(s: &dyn ReplayStore) {
    s.record("acme", &fp(1, Some(BASE)), "tx-short", SHORT)
        .await
        .unwrap();
    record(s, "acme", fp(2, Some(!BASE)), "tx-long").await;
    assert_eq!(
        find(s, "acme", fp(1, None), 7).await,
        found("tx-short", true, 0)
    );
    assert_eq!(
        find(s, "acme", fp(9, Some(BASE ^ 1)), 7).await,
        found("tx-short", false, 1)
    );
    sleep(PAST_SHORT).await;
    assert_eq!(find(s, "acme", fp(1, None), 7).await, None);
    assert_eq!(find(s, "acme", fp(9, Some(BASE ^ 1)), 7).await, None);
    assert_eq!(
        find(s, "acme", fp(9, Some(!BASE)), 7).await,
        found("tx-long", false, 0)
    );
    // Once expired, the digest is new again: its next transaction counts.
    record(s, "acme", fp(1, Some(BASE)), "tx-again").await;
    assert_eq!(
        find(s, "acme", fp(1, None), 7).await,
        found("tx-again", true, 0)
    );
    assert_eq!(
        find(s, "acme", fp(9, Some(BASE)), 7).await,
        found("tx-again", false, 0)
    );
}

// ----------------------------------------------------------- idempotency

const D1: [u8; 32] = [1; 32];
const D2: [u8; 32] = [2; 32];
const KEY: &str = "retry-7f3a-raw-idempotency-key";

fn answer() -> StoredAnswer {
    StoredAnswer {
        status: 200,
        body: Bytes::from_static(
            "{\"transactionId\":\"t-1\",\"score\":0.93,\"note\":\"caf\u{e9} \\\"q\\\"\"}\n"
                .as_bytes(),
        ),
        headers: vec![
            ("x-transaction-id".into(), "t-1".into()),
            ("x-livegate-decision".into(), "pass".into()),
        ],
    }
}

async fn claim(
    s: &dyn IdempotencyStore,
    scope: &str,
    d: &[u8; 32],
    lease: Duration,
    wait: Duration,
) -> Claim {
    s.claim(scope, KEY, d, lease, wait).await.unwrap()
}

async fn idempotent_answer(s: &dyn IdempotencyStore) {
    assert_eq!(claim(s, "acme", &D1, HOUR, HOUR).await, Claim::Claimed);
    s.complete("acme", KEY, &D1, &answer(), HOUR).await.unwrap();
    assert_eq!(
        claim(s, "acme", &D1, HOUR, HOUR).await,
        Claim::Done(answer())
    );
    // Not UTF-8: still byte for byte.
    let raw = StoredAnswer {
        status: 502,
        body: Bytes::from_static(&[0xff, 0xfe, b'{', 0]),
        headers: vec![],
    };
    assert_eq!(
        claim(s, "acme", &D1, HOUR, HOUR).await,
        Claim::Done(answer())
    );
    assert_eq!(
        s.claim("acme", "other-key", &D1, HOUR, HOUR).await.unwrap(),
        Claim::Claimed
    );
    s.complete("acme", "other-key", &D1, &raw, HOUR)
        .await
        .unwrap();
    assert_eq!(
        s.claim("acme", "other-key", &D1, HOUR, HOUR).await.unwrap(),
        Claim::Done(raw)
    );
    // The same key in another scope is another key.
    assert_eq!(claim(s, "globex", &D1, HOUR, HOUR).await, Claim::Claimed);
}

async fn mismatch_never_overwrites(s: &dyn IdempotencyStore) {
    // Pending with D1: D2 is a mismatch at once (no waiting).
    assert_eq!(claim(s, "acme", &D1, HOUR, HOUR).await, Claim::Claimed);
    let t = Instant::now();
    assert_eq!(claim(s, "acme", &D2, HOUR, HOUR).await, Claim::Mismatch);
    assert!(t.elapsed() < Duration::from_secs(1));
    // Neither another digest's release nor its complete touches D1's claim.
    s.release("acme", KEY, &D2).await.unwrap();
    s.complete("acme", KEY, &D2, &answer(), HOUR).await.unwrap();
    assert_eq!(
        claim(s, "acme", &D1, HOUR, Duration::ZERO).await,
        Claim::Busy
    );
    // Done with D1: D2 is a mismatch, and D2's answer never replaces it.
    let first = StoredAnswer {
        status: 201,
        ..answer()
    };
    s.complete("acme", KEY, &D1, &first, HOUR).await.unwrap();
    assert_eq!(claim(s, "acme", &D2, HOUR, HOUR).await, Claim::Mismatch);
    s.complete("acme", KEY, &D2, &answer(), HOUR).await.unwrap();
    s.release("acme", KEY, &D1).await.unwrap();
    assert_eq!(claim(s, "acme", &D1, HOUR, HOUR).await, Claim::Done(first));
}

/// Claims; if that got the key, answers after a while.
async fn claim_and_answer(s: &dyn IdempotencyStore) -> Claim {
    let c = claim(s, "acme", &D1, HOUR, Duration::from_secs(5)).await;
    if c == Claim::Claimed {
        sleep(Duration::from_millis(100)).await;
        s.complete("acme", KEY, &D1, &answer(), HOUR).await.unwrap();
    }
    c
}

async fn concurrent_claims(s: &dyn IdempotencyStore) {
    let t = Instant::now();
    let (a, b) = tokio::join!(claim_and_answer(s), claim_and_answer(s));
    let mut got = [a, b];
    got.sort_by_key(|c| c != &Claim::Claimed);
    assert_eq!(got, [Claim::Claimed, Claim::Done(answer())]);
    // Woken (or polled) soon after the answer, not at the end of `wait`.
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

async fn release_wakes_a_waiter(s: &dyn IdempotencyStore) {
    assert_eq!(claim(s, "acme", &D1, HOUR, HOUR).await, Claim::Claimed);
    let t = Instant::now();
    let (waiter, ()) = tokio::join!(claim(s, "acme", &D1, HOUR, Duration::from_secs(5)), async {
        sleep(Duration::from_millis(100)).await;
        s.release("acme", KEY, &D1).await.unwrap();
    });
    assert_eq!(waiter, Claim::Claimed);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // The waiter holds it now.
    assert_eq!(
        claim(s, "acme", &D1, HOUR, Duration::ZERO).await,
        Claim::Busy
    );
}

async fn lease_expiry(s: &dyn IdempotencyStore) {
    // A holder that never answers (a crashed replica).
    assert_eq!(claim(s, "acme", &D1, SHORT, HOUR).await, Claim::Claimed);
    assert_eq!(
        claim(s, "acme", &D1, SHORT, Duration::ZERO).await,
        Claim::Busy
    );
    // A waiter gets the key when the lease ends, well before its wait.
    let t = Instant::now();
    assert_eq!(
        claim(s, "acme", &D1, HOUR, Duration::from_secs(10)).await,
        Claim::Claimed
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(
        claim(s, "acme", &D1, HOUR, Duration::ZERO).await,
        Claim::Busy
    );
    // A lease that ended while nobody waited.
    assert_eq!(claim(s, "acme2", &D1, SHORT, HOUR).await, Claim::Claimed);
    sleep(PAST_SHORT).await;
    assert_eq!(
        claim(s, "acme2", &D1, HOUR, Duration::ZERO).await,
        Claim::Claimed
    );
}

async fn wait_elapsed_is_busy(s: &dyn IdempotencyStore) {
    assert_eq!(claim(s, "acme", &D1, HOUR, HOUR).await, Claim::Claimed);
    let wait = Duration::from_millis(250);
    let t = Instant::now();
    assert_eq!(claim(s, "acme", &D1, HOUR, wait).await, Claim::Busy);
    let took = t.elapsed();
    assert!(took >= wait && took < Duration::from_secs(2), "{took:?}");
}

async fn retention_expiry(s: &dyn IdempotencyStore) {
    assert_eq!(claim(s, "acme", &D1, HOUR, HOUR).await, Claim::Claimed);
    s.complete("acme", KEY, &D1, &answer(), SHORT)
        .await
        .unwrap();
    assert_eq!(
        claim(s, "acme", &D1, HOUR, HOUR).await,
        Claim::Done(answer())
    );
    sleep(PAST_SHORT).await;
    assert_eq!(claim(s, "acme", &D1, HOUR, HOUR).await, Claim::Claimed);
    // Forgotten for other digests too.
    s.complete("acme", KEY, &D1, &answer(), SHORT)
        .await
        .unwrap();
    sleep(PAST_SHORT).await;
    assert_eq!(claim(s, "acme", &D2, HOUR, HOUR).await, Claim::Claimed);
}

// ------------------------------------------------------------ Redis only

async fn conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn keys(c: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(c).await.unwrap();
    keys.sort();
    keys
}

async fn pttl(c: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(c).await.unwrap()
}

#[tokio::test]
async fn redis_buckets_are_trimmed_and_every_key_expires() {
    let server = Server::start(&[]);
    let s = redis_store(&server.url());
    let mut c = conn(&server.url()).await;
    s.record("acme", &fp(1, Some(BASE)), "tx-old", SHORT)
        .await
        .unwrap();
    let all = keys(&mut c).await;
    assert_eq!(all.len(), 1 + 8, "{all:?}");
    for k in &all {
        assert!(k.starts_with("livegate:{replay:acme}:"), "{k}");
        let ttl = pttl(&mut c, k).await;
        assert!(ttl > 0 && ttl <= 300, "{k}: {ttl}");
    }
    let bucket = "livegate:{replay:acme}:b:0:ef";
    assert!(all.iter().any(|k| k == bucket), "{all:?}");

    sleep(Duration::from_millis(100)).await;
    // Shares band 0 only (the other bands differ), with a longer window:
    // the bucket lives as long as its latest member.
    let other = (BASE & 0xff) | (!BASE & !0xff);
    record(&s, "acme", fp(2, Some(other)), "tx-new").await;
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(bucket)
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(pttl(&mut c, bucket).await > 300_000);

    sleep(PAST_SHORT).await;
    // The old member expired; the next record into the bucket removes it.
    record(&s, "acme", fp(3, Some(BASE)), "tx-3").await;
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(bucket)
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(
        members,
        [format!("{other:016x}:tx-new"), format!("{BASE:016x}:tx-3")]
    );
    for k in keys(&mut c).await {
        let ttl = pttl(&mut c, &k).await;
        assert!(ttl > 0, "{k} has no expiry: {ttl}");
    }
}

#[tokio::test]
async fn redis_never_stores_the_idempotency_key() {
    let server = Server::start(&[]);
    let s = redis_store(&server.url());
    let mut c = conn(&server.url()).await;
    assert_eq!(claim(&s, "acme", &D1, HOUR, HOUR).await, Claim::Claimed);
    assert_eq!(
        s.claim("acme", "another-raw-key", &D1, HOUR, HOUR)
            .await
            .unwrap(),
        Claim::Claimed
    );
    s.complete("acme", KEY, &D1, &answer(), HOUR).await.unwrap();
    let all = keys(&mut c).await;
    assert_eq!(all.len(), 2);
    for k in &all {
        assert!(k.starts_with("livegate:{idem:acme}:"), "{k}");
        assert!(!k.contains("raw") && !k.contains(KEY), "{k}");
        let value: Vec<u8> = redis::cmd("GET").arg(k).query_async(&mut c).await.unwrap();
        let value = String::from_utf8_lossy(&value);
        assert!(!value.contains("raw"), "{value}");
        assert!(pttl(&mut c, k).await > 0);
    }
}

#[tokio::test]
async fn redis_cluster_keeps_each_operation_in_one_slot() {
    let cluster = Cluster::start();
    let s = redis_store(&cluster.urls().join(","));
    record(&s, "acme", fp(1, Some(BASE)), "tx-1").await;
    record(&s, "globex", fp(2, Some(BASE)), "tx-2").await;
    assert_eq!(
        find(&s, "acme", fp(1, None), 7).await,
        found("tx-1", true, 0)
    );
    assert_eq!(
        find(&s, "acme", fp(9, Some(BASE ^ 3)), 7).await,
        found("tx-1", false, 2)
    );
    assert_eq!(find(&s, "*", fp(9, Some(BASE)), 7).await, None);
    assert_eq!(claim(&s, "acme", &D1, HOUR, HOUR).await, Claim::Claimed);
    s.complete("acme", KEY, &D1, &answer(), HOUR).await.unwrap();
    assert_eq!(
        claim(&s, "acme", &D1, HOUR, HOUR).await,
        Claim::Done(answer())
    );
    s.release("acme", KEY, &D1).await.unwrap();
}

/// Every operation fails with `Unavailable` (never a key in the text)
/// within about `bound`.
async fn all_unavailable(s: &RedisStore, bound: Duration) {
    let f = fp(1, Some(BASE));
    let t = Instant::now();
    let errors = [
        s.find("acme", &f, 7).await.unwrap_err(),
        s.record("acme", &f, "tx", HOUR).await.unwrap_err(),
        s.claim("acme", KEY, &D1, HOUR, HOUR).await.unwrap_err(),
        s.complete("acme", KEY, &D1, &answer(), HOUR)
            .await
            .unwrap_err(),
        s.release("acme", KEY, &D1).await.unwrap_err(),
    ];
    assert!(t.elapsed() < bound * 5, "{:?}", t.elapsed());
    for StoreError::Unavailable(why) in errors {
        assert!(!why.contains(KEY) && !why.contains("acme"), "{why}");
    }
}

#[tokio::test]
async fn redis_unreachable_is_unavailable() {
    let port = common::free_port();
    let s = redis_store(&format!("redis://127.0.0.1:{port}"));
    all_unavailable(&s, TIMEOUT + Duration::from_millis(200)).await;
}

#[tokio::test]
async fn redis_stalled_is_unavailable_after_the_timeout() {
    let server = Server::start(&[]);
    let s = RedisStore::new(
        Backend::from_url(&server.url(), TIMEOUT).unwrap(),
        Duration::from_millis(200),
    );
    assert_eq!(find(&s, "acme", fp(1, None), 7).await, None);
    server.signal("-STOP");
    let t = Instant::now();
    let e = s.find("acme", &fp(1, None), 7).await.unwrap_err();
    assert!(
        t.elapsed() < Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        e,
        StoreError::Unavailable("replay find timed out after 200 ms".into())
    );
    all_unavailable(&s, Duration::from_millis(400)).await;
    server.signal("-CONT");
}
