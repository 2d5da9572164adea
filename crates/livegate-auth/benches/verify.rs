//! What one key verification (`Authenticator::authenticate_key`) costs, by store and by
//! what the store has to do.
//!
//! `cargo bench -p livegate-auth --bench verify`
//!
//! - `memory_valid`: [`MemoryStore`], valid key: the floor (parse, one map lookup, one
//!   HMAC-SHA-256 and the constant-time compare).
//! - `redis_hit`: [`RedisStore`], valid key, cache hit: verified once before measuring,
//!   `cache_ttl` at its default (900 ms), so no round trip, except one `MGET` refresh
//!   per 900 ms of measurement (amortized, negligible at µs per call).
//! - `redis_miss`: [`RedisStore`], valid key already seen, `cache_ttl` = 0: every lookup
//!   finds its cached entry expired and re-reads it with exactly **one** round trip, an
//!   `MGET` of the key record and its tenant (the tenant is known from the previous
//!   read, so the `GET` of the kid index is skipped).
//! - `redis_unknown_new`: [`RedisStore`] (default settings), well-formed key with a kid
//!   never seen before, a new one per call (as a scan of random kids would): one round
//!   trip, the `GET` of the kid index, then the dummy HMAC; the kid is then cached as
//!   absent.
//! - `redis_unknown_cached`: the same unknown kid over and over: absent in the cache,
//!   so no round trip within the TTL, only the dummy HMAC.
//!
//! A valid key's first verification also spawns its `last_used_at` touch (at most once a
//! minute per key); the warm-up does that, so the figures do not include it.
//!
//! The Redis cases run against a private `redis-server` started here on a free port (never
//! the shared one on 6379) and killed at the end; without `redis-server` on `PATH` they are
//! skipped. Each measurement runs its loop inside one `block_on` of a current-thread Tokio
//! runtime (`iter_custom`), so the runtime's entry cost is not in the figures. After
//! criterion's report it prints the mean per verification of each case measured in this
//! run (from the estimates criterion just wrote).

#[path = "../../../bench/criterion_estimates.rs"]
mod estimates;

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::Criterion;
use livegate_auth::{
    AuthError, Authenticator, KeyAdmin, KeyRecord, KeyStore, MemoryStore, Pepper, RedisSettings,
    RedisStore, Tenant, generate,
};
use livegate_core::SystemClock;
use tokio::runtime::Runtime;

const PEPPER: &str = "benchmark-pepper-0123456789";
const GROUP: &str = "verify";

/// The cases, in the order of the table: (criterion id, description).
const CASES: [(&str, &str); 5] = [
    ("memory_valid", "MemoryStore, valid key (floor)"),
    ("redis_hit", "Redis, valid key, cache hit (0 RTT)"),
    ("redis_miss", "Redis, valid key, miss: 1 MGET (ttl 0)"),
    (
        "redis_unknown_new",
        "Redis, unknown kid, new each call: 1 GET",
    ),
    (
        "redis_unknown_cached",
        "Redis, unknown kid, cached absent (0 RTT)",
    ),
];

/// A private `redis-server`, killed on drop.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    /// `None` when `redis-server` is not on `PATH`.
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.pongs() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    fn pongs(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut reply = [0; 7];
        s.write_all(b"PING\r\n").is_ok()
            && s.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pepper() -> Pepper {
    Pepper::new(PEPPER).expect("pepper is long enough")
}

fn authenticator(store: Arc<dyn KeyStore>) -> Authenticator {
    Authenticator::new(store, pepper(), Arc::new(SystemClock))
}

/// A new, valid, unstored key's plaintext.
fn new_key() -> String {
    generate().plaintext.expose().to_owned()
}

/// A key record for a fresh key of tenant `acme`, and the key's plaintext.
fn fresh_record() -> (KeyRecord, String) {
    let key = generate();
    let record = KeyRecord::new(key.kid.clone(), "acme", key.hash(&pepper()));
    (record, key.plaintext.expose().to_owned())
}

/// Measures `authenticate_key(key)` for each of `keys(iters)`, in one `block_on`, each
/// result checked by `ok`.
fn bench_case(
    c: &mut Criterion,
    rt: &Runtime,
    id: &str,
    auth: &Authenticator,
    keys: impl Fn(u64) -> Vec<String>,
    ok: fn(&Result<livegate_auth::Principal, AuthError>) -> bool,
) {
    let mut group = c.benchmark_group(GROUP);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let keys = keys(iters);
            rt.block_on(async {
                let start = Instant::now();
                for key in &keys {
                    let r = auth.authenticate_key(black_box(key)).await;
                    assert!(ok(&r), "{id}: unexpected result {r:?}");
                    black_box(r).ok();
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

fn is_ok(r: &Result<livegate_auth::Principal, AuthError>) -> bool {
    r.is_ok()
}

fn is_unknown(r: &Result<livegate_auth::Principal, AuthError>) -> bool {
    matches!(r, Err(AuthError::Unknown))
}

/// `n` copies of `key`.
fn same(key: &str) -> impl Fn(u64) -> Vec<String> + '_ {
    move |n| vec![key.to_owned(); n as usize]
}

fn bench_memory(c: &mut Criterion, rt: &Runtime) {
    let store = Arc::new(MemoryStore::new());
    store.put_tenant(Tenant::new("acme"));
    let (record, key) = fresh_record();
    store.put_key(record);
    let auth = authenticator(store);
    bench_case(c, rt, "memory_valid", &auth, same(&key), is_ok);
}

fn bench_redis(c: &mut Criterion, rt: &Runtime, server: &Server) {
    // A loaded 2-core machine: keep the bound, not the 50 ms, so a slow reply does not
    // turn into an error (or a stale answer) mid-measurement.
    let settings = RedisSettings {
        prefix: format!("lgbench{}", std::process::id()),
        command_timeout: Duration::from_millis(500),
        ..RedisSettings::default()
    };
    let (store, miss_store) = rt.block_on(async {
        let store = RedisStore::new(&server.url(), settings.clone()).expect("redis store");
        let miss_store = RedisStore::new(
            &server.url(),
            RedisSettings {
                cache_ttl: Duration::ZERO,
                ..settings.clone()
            },
        )
        .expect("redis store");
        // Subscribing clears the cache: wait for it, so it cannot happen after warming.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(store.subscribed() && miss_store.subscribed()) {
            assert!(
                Instant::now() < deadline,
                "invalidation subscriber did not connect"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (store, miss_store)
    });
    let (record, key) = fresh_record();
    rt.block_on(async {
        store
            .create_tenant(Tenant::new("acme"))
            .await
            .expect("create tenant");
        store.add_key(record).await.expect("add key");
    });
    let (store, miss_store): (Arc<dyn KeyStore>, Arc<dyn KeyStore>) =
        (Arc::new(store), Arc::new(miss_store));
    let auth = authenticator(store);
    let miss_auth = authenticator(miss_store);
    // Warm: the hit case's entry, and the miss case's known tenant.
    rt.block_on(async {
        auth.authenticate_key(&key).await.expect("valid key");
        miss_auth.authenticate_key(&key).await.expect("valid key");
    });

    bench_case(c, rt, "redis_hit", &auth, same(&key), is_ok);
    bench_case(c, rt, "redis_miss", &miss_auth, same(&key), is_ok);
    let new_keys = |n: u64| (0..n).map(|_| new_key()).collect();
    bench_case(c, rt, "redis_unknown_new", &auth, new_keys, is_unknown);
    let unknown = new_key();
    bench_case(
        c,
        rt,
        "redis_unknown_cached",
        &auth,
        same(&unknown),
        is_unknown,
    );
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    bench_memory(&mut c, &rt);
    match Server::start() {
        Some(server) => bench_redis(&mut c, &rt, &server),
        None => println!("redis-server is not on PATH: skipping the Redis cases"),
    }
    c.final_summary();
    print_table(started);
}

fn print_table(since: SystemTime) {
    let Some(root) = estimates::criterion_dir() else {
        return;
    };
    let group = root.join(GROUP);
    let rows: Vec<(&str, &str, f64)> = CASES
        .iter()
        .filter_map(|&(id, what)| Some((id, what, estimates::mean_ns(&group.join(id), since)?)))
        .collect();
    if rows.is_empty() {
        return;
    }
    // The ratio column only when the floor was measured in this run too.
    let floor = rows
        .iter()
        .find(|(id, ..)| *id == "memory_valid")
        .map(|r| r.2);
    println!("\nper verification (authenticate_key), mean, this run:");
    println!("{:<22} {:<44} {:>10} {:>9}", "case", "", "µs", "/memory");
    for (id, what, ns) in rows {
        let ratio = floor.map_or_else(String::new, |f| format!("{:.1}x", ns / f));
        println!("{id:<22} {what:<44} {:>10.2} {ratio:>9}", ns / 1e3);
    }
}
