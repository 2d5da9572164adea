//! Early answers every client can read: an answer sent before the request
//! body was read (401, 404, 413, 415, 429, …) is followed by a lingering
//! close, so a client that writes its whole body before reading (Python's
//! `http.client`) or reads while it writes (curl) gets the answer — with
//! its `Retry-After` — and, when the body was drained, keeps its
//! connection. Real binary, real simulator, real clients.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use livegate_stub::StubConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VENDOR_KEY: &str = "vendor-key-linger-4242";

/// An ~80 KB JSON body: the drawn face plus a member the gateway ignores.
fn body_80k() -> Vec<u8> {
    let face = b64(&testdata("face-320x240.jpg"));
    let pad = "x".repeat(80 * 1024 - face.len() - 40);
    format!(r#"{{"faceImage":"{face}","padding":"{pad}"}}"#).into_bytes()
}

/// Runs `tests/clients/keepalive_posts.py`; its JSON summary.
fn python_posts(
    gw: &Proc,
    key: &str,
    count: usize,
    rate: f64,
    conns: usize,
    body: &[u8],
    path_and_type: Option<(&str, &str)>,
) -> serde_json::Value {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/keepalive_posts.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(gw.addr.ip().to_string())
        .arg(gw.addr.port().to_string())
        .arg(key)
        .arg(count.to_string())
        .arg(rate.to_string())
        .arg(conns.to_string())
        .arg(file.path());
    if let Some((path, ctype)) = path_and_type {
        cmd.arg(path).arg(ctype);
    }
    let out = cmd.output().expect("python3 runs");
    assert!(out.status.success(), "{}", output_text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(&out)))
}

fn count(summary: &serde_json::Value, status: &str) -> u64 {
    summary["statuses"][status].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reads_every_429_at_three_times_the_rate_over_keep_alive() {
    const RATE: f64 = 100.0;
    let (_stub, key, cfg) = stub_and_tenant(StubConfig::new(VENDOR_KEY), VENDOR_KEY).await;
    let cfg = cfg.replace(
        "[[tenants]]\nid = \"acme\"\n",
        &format!("[[tenants]]\nid = \"acme\"\nrate_per_second = {RATE}\nburst = 10\n"),
    );
    let gw = Proc::serve(Some(&cfg), &[]);
    let body = body_80k();
    let summary = python_posts(&gw, &key.plaintext, 1000, 3.0 * RATE, 4, &body, None);
    eprintln!("{summary}");
    assert_eq!(summary["errors"], serde_json::json!({}), "transport errors");
    assert_eq!(summary["no_retry_after"], 0, "a 429 without Retry-After");
    let (ok, limited) = (count(&summary, "200"), count(&summary, "429"));
    assert_eq!(ok + limited, 1000, "{summary}");
    assert!(ok > 0 && limited > 0, "{summary}");
    // Every refusal's body was drained: no connection had to be reopened.
    assert_eq!(summary["reopened"], 0, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reads_401_404_413_and_415_and_keeps_its_connection() {
    let (_stub, key, cfg) = stub_and_tenant(StubConfig::new(VENDOR_KEY), VENDOR_KEY).await;
    let cfg = cfg.replace(
        "[server]\n",
        "[server]\nbody_limit_bytes = 65536\nlingering_bytes = 1048576\n",
    );
    let gw = Proc::serve(Some(&cfg), &[]);
    let body = body_80k();
    let bad_key = make_key().plaintext;
    let small = &body[..60 * 1024];
    for (key, body, target, status) in [
        (bad_key.as_str(), small, None, "401"),
        (
            &key.plaintext,
            small,
            Some(("/no/such/route", "application/json")),
            "404",
        ),
        (&key.plaintext, &body[..], None, "413"),
        (
            &key.plaintext,
            small,
            Some(("/modules/liveness", "text/plain")),
            "415",
        ),
    ] {
        let summary = python_posts(&gw, key, 40, 1000.0, 2, body, target);
        assert_eq!(
            summary["errors"],
            serde_json::json!({}),
            "{status}: {summary}"
        );
        assert_eq!(count(&summary, status), 40, "{summary}");
        assert_eq!(summary["reopened"], 0, "{status}: {summary}");
    }
}

/// curl's `%{http_code} %{num_connects}` per transfer, and its exit status.
fn curl_posts(gw: &Proc, key: &str, body: &[u8], n: usize, expect: &str) -> (Vec<String>, bool) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let url = gw.url("/modules/liveness");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-w", "%{http_code} %{num_connects}\\n"])
        .args(["-H", &format!("x-api-key: {key}")])
        .args(["-H", "content-type: application/json"])
        .args(["-H", expect])
        .arg("--data-binary")
        .arg(format!("@{}", file.path().display()));
    for _ in 0..n {
        cmd.args(["-o", "/dev/null"]).arg(&url);
    }
    let out = cmd.output().expect("curl runs");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (lines, out.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reads_every_early_answer() {
    let gw = Proc::serve(None, &[]);
    let bad_key = make_key().plaintext;
    let body = body_80k();
    // Without `Expect: 100-continue` curl sends the body while it reads:
    // every answer arrives. (When the answer comes before curl has sent
    // the whole body, curl stops sending and opens a new connection for
    // the next transfer: which one that is depends on timing.)
    let (lines, ok) = curl_posts(&gw, &bad_key, &body, 20, "Expect:");
    assert!(ok, "curl failed: {lines:?}");
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|l| l.starts_with("401 ")), "{lines:?}");
    // With it, the answer comes instead of `100 Continue`: curl sends no
    // body and every transfer still gets its answer.
    let (lines, ok) = curl_posts(&gw, &bad_key, &body, 5, "Expect: 100-continue");
    assert!(ok, "curl failed: {lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("401 ")), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingering_is_bounded_in_time_and_bytes() {
    const BODY: usize = 64 << 20;
    let gw = Proc::serve(
        None,
        &[
            ("LIVEGATE_SERVER__LINGERING_TIMEOUT_MS", "300"),
            ("LIVEGATE_SERVER__LINGERING_BYTES", "100000"),
        ],
    );
    let bad_key = make_key().plaintext;
    let head = format!(
        "POST /modules/liveness HTTP/1.1\r\nhost: x\r\nx-api-key: {bad_key}\r\n\
         content-type: application/json\r\ncontent-length: {BODY}\r\n\r\n{{"
    );
    // A client that stalls after its first byte of body: the connection is
    // closed once the lingering time is over.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got))
        .await
        .is_ok();
    assert!(closed, "a stalled body held the connection");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 401"));
    // A client that keeps sending: cut off after about lingering_bytes. The
    // body is far larger than the two sockets' buffers together (a few MB
    // each with autotuning), so a client that could send all of it was read.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'a'; 16 * 1024];
    let mut sent = 0usize;
    let writer = async {
        while sent < BODY {
            if s.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), writer).await;
    assert!(
        sent < BODY,
        "the whole {BODY}-byte body was read and discarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_that_must_appear_once_sent_twice_differently_is_400() {
    let gw = Proc::serve(None, &[]);
    let key = gw.dev_key();
    let other = make_key().plaintext;
    let url = gw.url("/modules/liveness");
    let body = face_json(&b64(&testdata("face-320x240.jpg")));
    let bearer = |k: &str| format!("Bearer {k}");
    let tp1 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let tp2 = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01";
    for (name, a, b) in [
        ("x-api-key", key.clone(), other.clone()),
        ("authorization", bearer(&key), bearer(&other)),
        ("idempotency-key", "one".to_owned(), "two".to_owned()),
        ("traceparent", tp1.to_owned(), tp2.to_owned()),
    ] {
        let mut h = vec![("content-type", "application/json"), (name, &a), (name, &b)];
        if name != "x-api-key" && name != "authorization" {
            h.push(("x-api-key", &key));
        }
        let r = send(&url, "POST", &h, body.clone()).await;
        assert_eq!(r.status, 400, "{name}: {:?}", r.body);
        assert_eq!(r.error_code(), 40010, "{name}");
        let message = r.json()["message"].as_str().unwrap().to_ascii_lowercase();
        assert!(message.contains(name), "{name}: {message}");
        // The same value twice is one value.
        let mut h = vec![("content-type", "application/json"), (name, &a), (name, &a)];
        if name != "x-api-key" && name != "authorization" {
            h.push(("x-api-key", &key));
        }
        let r = send(&url, "POST", &h, body.clone()).await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
    }
}
