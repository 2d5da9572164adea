//! Test harness: the real `livegate` binary, the simulator, a plain HTTP
//! client and raw sockets. Nothing here imitates a part we ship.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use livegate_auth::hash::Pepper;
use livegate_auth::key;

pub const PEPPER: &str = "test-pepper-0123456789abcdef";

pub fn testdata(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn b64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

/// A tenant key made the way an operator would (`livegate keys new`).
pub struct TestKey {
    pub plaintext: String,
    pub kid: String,
    pub hash: String,
}

pub fn make_key() -> TestKey {
    let new = key::generate();
    let plaintext = new.plaintext.expose().to_owned();
    let hash = new.hash(&Pepper::new(PEPPER).unwrap()).to_string();
    TestKey {
        kid: new.kid.to_string(),
        plaintext,
        hash,
    }
}

/// A running `livegate` process with everything it printed captured.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    /// The operations listener (`livegate serve` only).
    pub ops_addr: Option<SocketAddr>,
    pub output: Arc<Mutex<String>>,
    _config: Option<tempfile::NamedTempFile>,
}

/// The gateway binary under test: this build's, or `LIVEGATE_TEST_BIN`
/// (a release build, say, to read a test's printed latencies at release
/// speed; the tests' assertions hold for either).
pub fn bin() -> PathBuf {
    std::env::var_os("LIVEGATE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_livegate")))
}

impl Proc {
    /// `livegate serve` with this TOML (listen is forced to an ephemeral port).
    pub fn serve(config: Option<&str>, env: &[(&str, &str)]) -> Proc {
        let file = config.map(|c| {
            let f = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(f.path(), c).unwrap();
            f
        });
        let mut cmd = Command::new(bin());
        cmd.arg("serve");
        if let Some(f) = &file {
            cmd.arg("--config").arg(f.path());
        }
        clean_env(&mut cmd);
        cmd.env("LIVEGATE_SERVER__LISTEN", "127.0.0.1:0");
        cmd.env("LIVEGATE_OPS__LISTEN", "127.0.0.1:0");
        // Tests that are not about the shutdown delay do not wait it out.
        cmd.env("LIVEGATE_SERVER__SHUTDOWN_DELAY_MS", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, "livegate listening on ", file)
    }

    /// `livegate stub` on an ephemeral port.
    pub fn stub(env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(bin());
        cmd.args(["stub", "--listen", "127.0.0.1:0"]);
        clean_env(&mut cmd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, "livegate stub listening on ", None)
    }

    fn spawn(mut cmd: Command, ready: &str, file: Option<tempfile::NamedTempFile>) -> Proc {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn livegate");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = output.lock().unwrap().clone();
            if let Some(rest) = text.split(ready).nth(1) {
                let addr = rest.lines().next().unwrap().trim().parse().unwrap();
                let ops_addr = text
                    .split("livegate ops listening on ")
                    .nth(1)
                    .and_then(|r| r.lines().next())
                    .and_then(|l| l.trim().parse().ok());
                return Proc {
                    child,
                    addr,
                    ops_addr,
                    output,
                    _config: file,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("livegate exited early ({status}):\n{text}");
            }
            assert!(Instant::now() < deadline, "livegate did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A URL on the operations listener.
    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ops_addr.expect("an ops listener"))
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The development key the embedded default prints once at start-up.
    pub fn dev_key(&self) -> String {
        self.output()
            .split_whitespace()
            .find(|w| w.starts_with("lvg_") && w.len() == key::KEY_LEN)
            .expect("a development key is printed")
            .to_owned()
    }

    /// SIGTERM, then wait for exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(100));
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "livegate did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("LIVEGATE_") || k.starts_with("OTEL_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn error_code(&self) -> i64 {
        self.json()["errorCode"].as_i64().expect("errorCode")
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub async fn send(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client()
        .request(req.body(Full::new(body.into())).unwrap())
        .await
        .expect("request failed");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn post_json(url: &str, key: Option<&str>, body: impl Into<Bytes>) -> Resp {
    let mut h = vec![("content-type", "application/json")];
    if let Some(k) = key {
        h.push(("x-api-key", k));
    }
    send(url, "POST", &h, body).await
}

/// The drawn 320x240 JPEG as a raw `image/jpeg` upload with this key.
pub async fn post_raw_jpeg(url: &str, key: &str) -> Resp {
    send(
        url,
        "POST",
        &[("x-api-key", key), ("content-type", "image/jpeg")],
        testdata("face-320x240.jpg"),
    )
    .await
}

pub fn face_json(b64: &str) -> String {
    format!(r#"{{"faceImage":"{b64}"}}"#)
}

/// Writes raw bytes on a fresh connection and returns what came back
/// (status line and the rest) — for bodies a normal client will not send.
pub async fn raw_exchange(addr: SocketAddr, head: &str, body_chunks: &[&[u8]]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    for chunk in body_chunks {
        // The server may answer and close before the whole body is sent.
        if s.write_all(chunk).await.is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Gateway config with a vendor URL, test pepper and the given tenants block.
pub fn config_with_vendor(vendor_url: &str, vendor_key: &str, tenants: &str) -> String {
    format!(
        r#"
[vendor]
base_url = "{vendor_url}"
api_key = "{vendor_key}"
timeout_ms = 3000

[auth]
pepper = "{PEPPER}"

[server]
drain_timeout_ms = 5000

{tenants}
"#
    )
}

pub fn tenant_block(id: &str, disabled: bool, keys: &[(&TestKey, Option<&str>, bool)]) -> String {
    let mut s = format!("[[tenants]]\nid = \"{id}\"\ndisabled = {disabled}\n");
    for (k, expires, revoked) in keys {
        s.push_str(&format!(
            "[[tenants.keys]]\nid = \"{}\"\nhash = \"{}\"\nrevoked = {revoked}\n",
            k.kid, k.hash
        ));
        if let Some(e) = expires {
            s.push_str(&format!("expires_at = \"{e}\"\n"));
        }
    }
    s
}

/// Serves `app` (built from `rt`) in this process on an ephemeral loopback
/// port until the returned sender is dropped or fired.
pub async fn serve_in_process(
    rt: livegate::runtime::Runtime,
    app: axum::Router,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = livegate::server::Serve {
        app,
        health: rt.gateway.health.clone(),
        edge: livegate::server::Edge {
            shutdown_delay: Duration::ZERO,
            drain: Duration::from_secs(5),
            ..livegate::server::Edge::default()
        },
        tls: None,
    };
    tokio::spawn(async move {
        let _rt = rt;
        let shutdown = async move {
            let _ = rx.await;
        };
        livegate::server::serve(listener, config, shutdown)
            .await
            .unwrap();
    });
    (addr, tx)
}

/// A configuration loaded from this TOML text (no environment). Unless the
/// text says otherwise, audit records go to `/dev/null` rather than the
/// test binary's stdout.
pub fn load_config(toml: &str) -> livegate_config::Config {
    let file = tempfile::NamedTempFile::new().unwrap();
    let toml = if toml.contains("[audit]") {
        toml.to_owned()
    } else {
        format!("{toml}\n[audit]\nsink = \"file\"\npath = \"/dev/null\"\n")
    };
    std::fs::write(file.path(), toml).unwrap();
    livegate_config::load(Some(file.path()), Vec::new()).unwrap()
}

/// Runs the binary with these arguments and environment (no inherited
/// `LIVEGATE_*` variables).
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    clean_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Everything a finished command printed, stdout then stderr.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A simulator with `stub`'s settings, and the configuration of a gateway in
/// front of it with one tenant ("acme") holding the returned key.
pub async fn stub_and_tenant(
    stub: livegate_stub::StubConfig,
    vendor_key: &str,
) -> (livegate_stub::StubHandle, TestKey, String) {
    let stub = livegate_stub::spawn(stub).await.unwrap();
    let key = make_key();
    let cfg = config_with_vendor(
        &stub.base_url(),
        vendor_key,
        &tenant_block("acme", false, &[(&key, None, false)]),
    );
    (stub, key, cfg)
}
