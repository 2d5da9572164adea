//! Against a real, private `redis-server` per test (never the shared 6379).
//! Tests run one at a time: they measure time.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use livegate_ratelimit::{
    Decision, FailMode, FallbackLimiter, Limit, Limiter, RedisLimiter, RedisLimiterSettings,
};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TIMEOUT: Duration = Duration::from_millis(25);
const SLACK: Duration = Duration::from_millis(50);

struct RedisServer {
    child: Option<Child>,
    port: u16,
    stopped: bool,
    extra: Vec<String>,
}

impl RedisServer {
    fn start() -> Self {
        Self::start_with(Vec::new())
    }

    fn start_with(extra: Vec<String>) -> Self {
        // Below 55536 so a cluster bus port (port + 10000) exists too.
        let port = loop {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            if port < 55_536 {
                break port;
            }
        };
        let mut server = Self {
            child: None,
            port,
            stopped: false,
            extra,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.raw("PING").as_deref() == Some("+PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// One inline command; the first line of the reply.
    fn raw(&self, command: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).ok()?;
        let reply = String::from_utf8_lossy(&buf[..n]);
        Some(reply.lines().next().unwrap_or_default().to_owned())
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    fn freeze(&mut self) {
        self.signal("-STOP");
        self.stopped = true;
    }

    fn thaw(&mut self) {
        if self.stopped {
            self.signal("-CONT");
            self.stopped = false;
        }
    }

    fn kill(&mut self) {
        self.thaw();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn settings(timeout: Duration) -> RedisLimiterSettings {
    RedisLimiterSettings {
        command_timeout: timeout,
        ..RedisLimiterSettings::default()
    }
}

fn limit(rate: f64, burst: u32, quota: Option<u64>) -> Limit {
    Limit {
        rate_per_second: rate,
        burst,
        monthly_quota: quota,
    }
}

fn allowed(d: &Decision) -> bool {
    matches!(d, Decision::Allowed { .. })
}

/// Calls `check` and asserts it returned within the timeout + slack.
async fn timed_check(l: &dyn Limiter, tenant: &str, lim: Limit) -> Decision {
    let started = Instant::now();
    let d = l.check(tenant, lim).await;
    let took = started.elapsed();
    assert!(took <= TIMEOUT + SLACK, "check took {took:?}");
    d
}

/// Until the limiter reports Redis in force (or panics after 5 s).
async fn until_redis(l: &FallbackLimiter, tenant: &str, lim: Limit) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        l.check(tenant, lim).await;
        if l.health().mode == "redis" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never back on redis: {:?}", l.health());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_accuracy_across_two_replicas() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    // Generous timeout: a timed-out call may still have been admitted.
    let replicas = [
        Arc::new(RedisLimiter::new(&redis.url(), settings(Duration::from_secs(2))).unwrap()),
        Arc::new(RedisLimiter::new(&redis.url(), settings(Duration::from_secs(2))).unwrap()),
    ];
    let lim = limit(20.0, 5, None);
    let admitted = Arc::new(AtomicU64::new(0));
    let first = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (limiter, admitted, first) = (replicas[i % 2].clone(), admitted.clone(), first.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let d = limiter.try_check("acc", lim).await.expect("redis answers");
                if allowed(&d) {
                    let now = Instant::now();
                    first.lock().unwrap().get_or_insert(now);
                    admitted.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Calls stop being issued at the deadline: that is the end.
    let first = first.lock().unwrap().expect("some admitted");
    let t = deadline.saturating_duration_since(first).as_secs_f64();
    let expected = 5.0 + 20.0 * t;
    let got = admitted.load(Ordering::SeqCst) as f64;
    eprintln!("admitted {got}, expected {expected:.2} over {t:.3} s");
    assert!(
        (got - expected).abs() <= 1.0,
        "admitted {got}, expected {expected:.2} over {t:.3} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_exact_across_two_replicas() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let s = settings(Duration::from_secs(1));
    let a = RedisLimiter::new(&redis.url(), s.clone()).unwrap();
    let b = RedisLimiter::new(&redis.url(), s).unwrap();
    let lim = limit(1000.0, 1000, Some(30));
    for i in 0..30 {
        let l = if i % 2 == 0 { &a } else { &b };
        let d = l.try_check("q", lim).await.unwrap();
        assert!(
            matches!(d, Decision::Allowed { quota_remaining: Some(r), .. } if r == 29 - i),
            "call {i}: {d:?}"
        );
    }
    for l in [&a, &b] {
        match l.try_check("q", lim).await.unwrap() {
            Decision::QuotaExceeded { retry_after, .. } => {
                assert!(
                    retry_after > Duration::ZERO && retry_after <= Duration::from_secs(31 * 86_400)
                );
            }
            d => panic!("31st: {d:?}"),
        }
    }
    let usage = a.try_usage("q", lim).await.unwrap();
    assert_eq!((usage.used, usage.remaining), (30, Some(0)));
    assert_eq!(usage.month.len(), 7);
    let json = serde_json::to_value(&usage).unwrap();
    assert_eq!(json["monthlyQuota"], 30);

    // Refused by the rate: not counted.
    let slow = limit(0.001, 5, Some(30));
    let mut decisions = Vec::new();
    for i in 0..20 {
        let l = if i % 2 == 0 { &a } else { &b };
        decisions.push(l.try_check("r", slow).await.unwrap());
    }
    assert_eq!(decisions.iter().filter(|d| allowed(d)).count(), 5);
    assert!(
        decisions[5..]
            .iter()
            .all(|d| matches!(d, Decision::RateLimited { .. }))
    );
    assert_eq!(b.try_usage("r", slow).await.unwrap().used, 5);

    // Keys are hash-tagged per tenant; the month's count expires.
    assert_eq!(redis.raw("EXISTS livegate:{t:r}:rl").as_deref(), Some(":1"));
    let quota_key = format!("livegate:{{t:r}}:quota:{}", usage.month);
    let pttl: i64 = redis.raw(&format!("PTTL {quota_key}")).unwrap()[1..]
        .parse()
        .unwrap();
    assert!(pttl > 0 && pttl <= 33 * 86_400_000, "pttl {pttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_the_script_after_script_flush() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let l = RedisLimiter::new(&redis.url(), settings(Duration::from_secs(1))).unwrap();
    let lim = limit(0.001, 3, None);
    assert!(allowed(&l.try_check("s", lim).await.unwrap()));
    assert_eq!(redis.raw("SCRIPT FLUSH").as_deref(), Some("+OK"));
    assert!(allowed(&l.try_check("s", lim).await.unwrap()));
    assert_eq!(redis.raw("SCRIPT FLUSH").as_deref(), Some("+OK"));
    assert!(matches!(
        l.try_check("s", lim).await.unwrap(),
        Decision::Allowed { remaining: 0, .. }
    ));
    assert!(matches!(
        l.try_check("s", lim).await.unwrap(),
        Decision::RateLimited { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_by_mode_and_recovers() {
    let _serial = SERIAL.lock().await;
    let mut redis = RedisServer::start();
    let make = |mode| {
        FallbackLimiter::new(
            RedisLimiter::new(&redis.url(), settings(TIMEOUT)).unwrap(),
            mode,
            2,
        )
    };
    let (local, open, closed) = (
        make(FailMode::Local),
        make(FailMode::Open),
        make(FailMode::Closed),
    );
    let warm = limit(1000.0, 1000, None);
    for l in [&local, &open, &closed] {
        until_redis(l, "warm", warm).await;
    }
    redis.kill();

    // Local: this replica's share, rate 5/s and burst 5.
    let lim = limit(10.0, 10, None);
    let started = Instant::now();
    let mut admitted = 0;
    for _ in 0..40 {
        if allowed(&timed_check(&local, "f", lim).await) {
            admitted += 1;
        }
    }
    let bound = 5 + (5.0 * started.elapsed().as_secs_f64()).floor() as usize;
    assert!(
        admitted >= 5 && admitted <= bound,
        "admitted {admitted} > {bound}"
    );
    let h = local.health();
    assert_eq!((h.backend, h.ok, h.mode), ("redis", false, "local"));
    assert!(h.detail.is_some());
    assert!(local.errors() >= 1);
    // At most one Redis attempt per 100 ms.
    let attempts_bound = 1 + (started.elapsed().as_millis() / 100) as u64;
    assert!(
        local.errors() <= attempts_bound,
        "{} errors",
        local.errors()
    );

    for _ in 0..40 {
        assert!(allowed(&timed_check(&open, "f", lim).await));
        assert_eq!(timed_check(&closed, "f", lim).await, Decision::Unavailable);
    }
    assert_eq!(open.health().mode, "open");
    assert_eq!(closed.health().mode, "closed");
    assert!(local.usage("f", lim).await.is_err());

    // Back on the same port: exact limits again, same limiter.
    redis.spawn();
    until_redis(&local, "warm", warm).await;
    let h = local.health();
    assert_eq!((h.ok, h.mode, h.detail), (true, "redis", None));
    let exact = limit(0.001, 4, None);
    let mut decisions = Vec::new();
    for _ in 0..10 {
        decisions.push(timed_check(&local, "exact", exact).await);
    }
    // Local share would be burst 2; Redis enforces the whole burst.
    assert_eq!(
        decisions.iter().filter(|d| allowed(d)).count(),
        4,
        "{decisions:?}"
    );
    until_redis(&closed, "warm", warm).await;
    assert!(allowed(&timed_check(&closed, "g", lim).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_redis_never_stalls_calls() {
    let _serial = SERIAL.lock().await;
    let mut redis = RedisServer::start();
    let plain = RedisLimiter::new(&redis.url(), settings(TIMEOUT)).unwrap();
    let fallback = FallbackLimiter::new(
        RedisLimiter::new(&redis.url(), settings(TIMEOUT)).unwrap(),
        FailMode::Local,
        2,
    );
    let lim = limit(1000.0, 1000, None);
    until_redis(&fallback, "t", lim).await;
    assert!(allowed(&plain.check("t", lim).await) || allowed(&plain.check("t", lim).await));

    redis.freeze();
    for _ in 0..10 {
        assert_eq!(timed_check(&plain, "t", lim).await, Decision::Unavailable);
    }
    assert!(!plain.health().ok);
    let started = Instant::now();
    for _ in 0..50 {
        assert!(allowed(&timed_check(&fallback, "t", lim).await));
    }
    assert_eq!(fallback.health().mode, "local");
    let attempts_bound = 1 + (started.elapsed().as_millis() / 100) as u64;
    assert!(
        fallback.errors() <= attempts_bound,
        "{} errors",
        fallback.errors()
    );

    redis.thaw();
    until_redis(&fallback, "t", lim).await;
    assert!(fallback.health().ok);
}

/// A three-master Redis Cluster: a tenant's two keys share a slot, and
/// tenants spread over the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_a_redis_cluster() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<RedisServer> = (0..3)
        .map(|i| {
            let conf = dir.path().join(format!("nodes-{i}.conf"));
            RedisServer::start_with(vec![
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                conf.display().to_string(),
                "--dir".into(),
                dir.path().display().to_string(),
            ])
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("redis-cli");
    assert!(created.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().all(|n| cluster_ok(n.port)) {
        assert!(Instant::now() < deadline, "cluster never became ok");
        std::thread::sleep(Duration::from_millis(100));
    }
    let urls: Vec<String> = nodes.iter().map(RedisServer::url).collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let a = RedisLimiter::new_cluster(&urls, settings(Duration::from_secs(2))).unwrap();
    let b = RedisLimiter::new_cluster(&urls[1..], settings(Duration::from_secs(2))).unwrap();
    let lim = limit(0.001, 3, Some(2));
    for tenant in ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"] {
        let d: Vec<Decision> = vec![
            a.try_check(tenant, lim).await.unwrap(),
            b.try_check(tenant, lim).await.unwrap(),
            a.try_check(tenant, lim).await.unwrap(),
        ];
        assert!(allowed(&d[0]) && allowed(&d[1]), "{tenant}: {d:?}");
        assert!(
            matches!(d[2], Decision::QuotaExceeded { .. }),
            "{tenant}: {d:?}"
        );
        assert_eq!(b.try_usage(tenant, lim).await.unwrap().used, 2);
    }
    let holding = nodes
        .iter()
        .filter(|n| n.raw("DBSIZE").is_some_and(|r| r != ":0"))
        .count();
    assert!(holding >= 2, "tenants on {holding} node(s)");
}

/// `CLUSTER INFO` is a bulk reply: its first line is the length.
fn cluster_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"CLUSTER INFO\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 2048];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).contains("cluster_state:ok")
}

/// `calls=` of `cmdstat_evalsha` in `INFO commandstats` (0 when none).
fn evalsha_calls(redis: &RedisServer) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", redis.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s.write_all(b"INFO commandstats\r\n").unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // A bulk reply: `$<len>\r\n<len bytes>\r\n`.
    loop {
        let n = s.read(&mut buf).expect("read INFO");
        assert!(n > 0, "INFO reply cut short");
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some((head, body)) = text.split_once("\r\n") {
            let len: usize = head.trim_start_matches('$').parse().expect("bulk length");
            if body.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&reply);
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .map_or(0, |rest| {
            rest.split(',').next().unwrap().parse().expect("calls")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_tier_absorbs_a_flood_and_stays_exact() {
    let _serial = SERIAL.lock().await;
    let redis = RedisServer::start();
    let limiter = FallbackLimiter::new(
        RedisLimiter::new(&redis.url(), settings(Duration::from_secs(1))).unwrap(),
        FailMode::Local,
        2,
    );
    until_redis(&limiter, "warm", limit(1000.0, 1000, None)).await;
    let calls_before = evalsha_calls(&redis);

    let lim = limit(10.0, 5, None);
    let (mut requests, mut admitted) = (0u64, 0u64);
    let started = Instant::now();
    let mut last = started;
    while started.elapsed() < Duration::from_secs(1) {
        last = Instant::now();
        if allowed(&limiter.check("flood", lim).await) {
            admitted += 1;
        }
        requests += 1;
        if requests % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let calls = evalsha_calls(&redis) - calls_before;
    let want = 5.0 + 10.0 * (last - started).as_secs_f64();
    assert!(
        (admitted as f64 - want).abs() <= 1.0 + 1e-9,
        "admitted {admitted}, want {want:.2} ± 1"
    );
    assert!(limiter.absorbed() > 0, "nothing absorbed");
    assert!(
        calls < requests,
        "{calls} EVALSHA calls for {requests} requests"
    );
    assert_eq!(limiter.health().mode, "redis");
    eprintln!(
        "flood: {requests} requests, {admitted} admitted, {} absorbed, {calls} EVALSHA",
        limiter.absorbed()
    );
}
