//! A private `redis-server` per test (never the shared one on 6379), or
//! the server at `LIVEGATE_TEST_REDIS_URL` when set.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use livegate_auth::RedisSettings;

pub mod contract;

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A `redis-server` child process, killed on drop.
pub struct Server {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_on(free_port(), extra)
    }

    /// With an append-only file in `dir`, so [`Server::restart`] after a
    /// kill keeps the data.
    pub fn start_persistent(dir: &std::path::Path) -> Self {
        let dir = dir.to_str().expect("a UTF-8 temporary path");
        Self::start(&["--appendonly", "yes", "--dir", dir])
    }

    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        let mut s = Self {
            port,
            args: extra.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        s.restart();
        s
    }

    /// Starts (again) on the same port with the same arguments.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.cli(&["ping"]).is_some_and(|out| out.contains("PONG")) {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `redis-cli` against this server (authenticated when a
    /// `--requirepass` was given).
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(i) = self.args.iter().position(|a| a == "--requirepass") {
            cmd.args(["--no-auth-warning", "-a", &self.args[i + 1]]);
        }
        let out = cmd.args(args).stderr(Stdio::null()).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Sends a signal (`-STOP`, `-CONT`) to the server process.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    pub fn kill(&mut self) {
        // A frozen server must be able to die.
        self.signal("-CONT");
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where a test's store lives: a private server, or the external one with
/// a prefix of its own.
pub struct Target {
    pub server: Option<Server>,
    pub url: String,
    pub prefix: String,
}

pub fn target() -> Target {
    static N: AtomicU32 = AtomicU32::new(0);
    let prefix = format!(
        "lgtest{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    match std::env::var("LIVEGATE_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Target {
            server: None,
            url,
            prefix,
        },
        _ => {
            let server = Server::start(&[]);
            Target {
                url: server.url(),
                server: Some(server),
                prefix,
            }
        }
    }
}

impl Target {
    pub fn settings(&self) -> RedisSettings {
        RedisSettings {
            prefix: self.prefix.clone(),
            // A loaded 2-core test machine: keep the bound, not the 50 ms.
            command_timeout: Duration::from_millis(500),
            ..RedisSettings::default()
        }
    }
}

/// Every key under `prefix` with its value(s), as text.
pub async fn dump(url: &str, prefix: &str) -> Vec<(String, String)> {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .unwrap();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            let value = match kind.as_str() {
                "string" => redis::cmd("GET")
                    .arg(&key)
                    .query_async::<String>(&mut c)
                    .await
                    .unwrap(),
                "set" => redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async::<Vec<String>>(&mut c)
                    .await
                    .unwrap()
                    .join(","),
                // Replay fingerprints (livegate-protect): hashes and ids.
                "zset" => redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async::<Vec<String>>(&mut c)
                    .await
                    .unwrap()
                    .join(","),
                other => panic!("unexpected type {other} of {key}"),
            };
            out.push((key, value));
        }
        cursor = next;
        if cursor == 0 {
            return out;
        }
    }
}

/// A three-master Redis Cluster of private servers (no replicas).
pub struct Cluster {
    pub nodes: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        let nodes: Vec<Server> = (0..3)
            .map(|i| {
                // The bus port is chosen too: port + 10000 may not be free
                // (or even exist) for an ephemeral port.
                let bus = free_port().to_string();
                let conf = format!("nodes-{i}.conf");
                Server::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--cluster-port",
                    &bus,
                    "--dir",
                    &path,
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(out.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes.iter().all(|n| {
            n.cli(&["cluster", "info"])
                .is_some_and(|i| i.contains("cluster_state:ok"))
        }) {
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { nodes, _dir: dir }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Server::url).collect()
    }
}
