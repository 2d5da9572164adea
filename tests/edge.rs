//! The connection edge and the start-up contract, against the real binary
//! on real sockets: header and idle timeouts, the connection cap, the
//! shutdown delay, fail-closed configuration, secrets taken verbatim from
//! the environment, and TLS with a certificate replaced at run time.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use livegate_stub::StubConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const VENDOR_KEY: &str = "vendor-key-edge-8675309";

/// Reads what the server sends until it closes the connection (or `limit`
/// passes); returns the bytes and whether it closed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut buf)).await {
        Ok(_) => (buf, true),
        Err(_) => (buf, false),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_is_cut_off() {
    let gw = Proc::serve(None, &[("LIVEGATE_SERVER__HEADER_READ_TIMEOUT_MS", "1000")]);
    let s = TcpStream::connect(gw.addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    // A whole head at one byte per 250 ms would take over 12 s.
    let head = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaa\r\n\r\n";
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        for b in head {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        sent
    });
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut got))
        .await
        .is_ok();
    let sent = writer.await.unwrap();
    assert!(closed, "the connection stayed open");
    assert!(
        sent < head.len(),
        "the whole head went through ({sent} bytes)"
    );
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_send_a_byte_are_closed() {
    let gw = Proc::serve(None, &[("LIVEGATE_SERVER__HEADER_READ_TIMEOUT_MS", "1000")]);
    let mut conns = Vec::new();
    for _ in 0..500 {
        conns.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    let started = Instant::now();
    let waits = conns.into_iter().map(|mut s| async move {
        let (_, closed) = read_until_closed(&mut s, Duration::from_secs(30)).await;
        closed
    });
    let closed = futures_util::future::join_all(waits).await;
    assert_eq!(closed.iter().filter(|c| **c).count(), 500);
    // Closed by the header timeout, not by the test's own deadline.
    assert!(started.elapsed() < Duration::from_secs(30));
    // And the gateway still serves.
    let r = send(&gw.url("/livez"), "GET", &[], Vec::new()).await;
    assert_eq!(r.status, 200);
}

/// A request on a kept-alive connection; the status line of the answer.
async fn get_livez(s: &mut TcpStream) -> String {
    s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_cap_a_connection_waits_for_one_to_close() {
    let gw = Proc::serve(None, &[("LIVEGATE_SERVER__MAX_CONNECTIONS", "3")]);
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        assert_eq!(get_livez(&mut s).await, "HTTP/1.1 200 OK");
        open.push(s);
    }
    // The fourth is accepted by the kernel, not served by the gateway.
    let mut fourth = TcpStream::connect(gw.addr).await.unwrap();
    fourth
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(800), fourth.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap");
    // The first three still work.
    for s in &mut open {
        assert_eq!(get_livez(s).await, "HTTP/1.1 200 OK");
    }
    // One closes: the fourth is served.
    drop(open.pop());
    let n = tokio::time::timeout(Duration::from_secs(20), fourth.read(&mut buf))
        .await
        .expect("served once a slot was free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_shutdown_delay_readyz_is_503_and_requests_are_served() {
    let (_stub, key, cfg) = stub_and_tenant(StubConfig::new(VENDOR_KEY), VENDOR_KEY).await;
    let gw = Proc::serve(
        Some(&cfg),
        &[("LIVEGATE_SERVER__SHUTDOWN_DELAY_MS", "3000")],
    );
    let ready = send(&gw.url("/readyz"), "GET", &[], Vec::new()).await;
    assert_eq!(ready.status, 200);
    let pid = gw.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    // Not ready, yet serving.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = send(&gw.url("/readyz"), "GET", &[], Vec::new()).await;
        if r.status == 503 {
            assert_eq!(r.json()["status"], "draining");
            break;
        }
        assert!(Instant::now() < deadline, "readyz never went 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Probes keep coming while draining: a normal state, not an error.
    for _ in 0..3 {
        let r = send(&gw.url("/readyz"), "GET", &[], Vec::new()).await;
        assert_eq!(r.status, 503);
    }
    let jpeg = testdata("face-320x240.jpg");
    let r = post_json(
        &gw.url("/modules/liveness"),
        Some(&key.plaintext),
        face_json(&b64(&jpeg)),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut gw = gw;
    let status = tokio::task::spawn_blocking(move || {
        let s = gw.terminate();
        (s, gw.output())
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{}", status.1);
    assert!(status.1.contains("drained"), "{}", status.1);
    // Said at info when the drain began (once per listener); no ERROR per probe.
    assert!(
        status
            .1
            .contains("INFO livegate::server: shutdown: not ready"),
        "{}",
        status.1
    );
    assert!(!status.1.contains("ERROR"), "{}", status.1);
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let o = run_cli(args, env);
    (o.status.success(), output_text(&o))
}

#[test]
fn production_settings_without_a_vendor_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = make_key();
    let cases = [
        (
            "tenants",
            format!(
                "[auth]\npepper = \"{PEPPER}\"\n{}",
                tenant_block("acme", false, &[(&key, None, false)])
            ),
        ),
        ("auth.pepper", format!("[auth]\npepper = \"{PEPPER}\"\n")),
        (
            "admin.token",
            "[admin]\ntoken = \"admin-token-0123456789abcdef\"\n".to_owned(),
        ),
        (
            "redis.url",
            "[redis]\nurl = \"redis://127.0.0.1:1/0\"\n".to_owned(),
        ),
    ];
    for (setting, toml) in &cases {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let path = path.to_str().unwrap();
        for cmd in ["serve", "check-config"] {
            let (ok, out) = run(
                &[cmd, "--config", path],
                &[("LIVEGATE_SERVER__LISTEN", "127.0.0.1:0")],
            );
            assert!(!ok, "{cmd} accepted {setting} without a vendor:\n{out}");
            for needle in ["vendor.base_url", *setting, "simulator.enabled = true"] {
                assert!(out.contains(needle), "{cmd}: {needle} missing:\n{out}");
            }
            assert!(!out.contains(PEPPER), "{out}");
            assert!(!out.contains("admin-token-0123456789abcdef"), "{out}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_is_an_explicit_loud_opt_in() {
    let key = make_key();
    let cfg = format!(
        "[auth]\npepper = \"{PEPPER}\"\n[simulator]\nenabled = true\n{}",
        tenant_block("acme", false, &[(&key, None, false)])
    );
    let gw = Proc::serve(Some(&cfg), &[]);
    assert!(gw.output().contains("SIMULATOR ENABLED"), "{}", gw.output());
    let r = send(&gw.url("/readyz"), "GET", &[], Vec::new()).await;
    assert_eq!(r.json()["mode"], "simulator");
    let r = post_raw_jpeg(&gw.url("/modules/liveness"), key.plaintext.as_str()).await;
    assert_eq!(r.status, 200);
}

/// A key hashed with `pepper`, in a tenant block.
fn key_for_pepper(pepper: &str) -> (String, String) {
    let new = livegate_auth::key::generate();
    let hash = new.hash(&livegate_auth::hash::Pepper::new(pepper).unwrap());
    let block = format!(
        "[[tenants]]\nid = \"acme\"\n[[tenants.keys]]\nid = \"{}\"\nhash = \"{hash}\"\n",
        new.kid
    );
    (new.plaintext.expose().to_owned(), block)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_the_environment_arrive_byte_for_byte() {
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    for pepper in [
        "0000000000000000007",
        "  \"quoted pepper\" with spaces  ",
        "true-ish 1e3 [a, b]",
    ] {
        let (key, block) = key_for_pepper(pepper);
        let cfg = format!(
            "[vendor]\nbase_url = \"{}\"\napi_key = \"{VENDOR_KEY}\"\n{block}",
            stub.base_url()
        );
        let mut gw = Proc::serve(Some(&cfg), &[("LIVEGATE_AUTH__PEPPER", pepper)]);
        let r = post_raw_jpeg(&gw.url("/modules/liveness"), key.as_str()).await;
        assert_eq!(r.status, 200, "pepper {pepper:?}: {:?}", r.body);
        gw.terminate();
        assert!(!gw.output().contains(pepper.trim()), "{}", gw.output());
    }
}

#[test]
fn a_toml_error_on_a_secret_line_does_not_print_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    // A value without quotes: invalid TOML, on the line holding the secret.
    std::fs::write(
        &path,
        "[vendor]\nbase_url = \"https://v.example\"\napi_key = hunter2-secret-value\n",
    )
    .unwrap();
    let (ok, out) = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(!out.contains("hunter2-secret-value"), "{out}");
    assert!(out.contains("line 3"), "{out}");
    assert!(out.contains(path.to_str().unwrap()), "{out}");
}

/// TLS client trusting exactly `ca_pem`; the status line of `GET /livez`.
async fn https_livez(addr: std::net::SocketAddr, ca_pem: &str) -> Result<String, String> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET /livez HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf).await;
    Ok(String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_the_listener_and_a_certificate_replaced_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    let write = |c: &rcgen::CertifiedKey<rcgen::KeyPair>| {
        std::fs::write(&key_path, c.signing_key.serialize_pem()).unwrap();
        std::fs::write(&cert_path, c.cert.pem()).unwrap();
    };
    let first = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    write(&first);
    let cert = cert_path.to_str().unwrap().to_owned();
    let key = key_path.to_str().unwrap().to_owned();
    let gw = Proc::serve(
        None,
        &[
            ("LIVEGATE_SERVER__TLS_CERT_FILE", cert.as_str()),
            ("LIVEGATE_SERVER__TLS_KEY_FILE", key.as_str()),
        ],
    );
    assert_eq!(
        https_livez(gw.addr, &first.cert.pem()).await.unwrap(),
        "HTTP/1.1 200 OK"
    );
    let second = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    write(&second);
    // New connections get the new certificate once the files are looked at
    // again (every few seconds); the old one is no longer presented.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(line) = https_livez(gw.addr, &second.cert.pem()).await {
            assert_eq!(line, "HTTP/1.1 200 OK");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(https_livez(gw.addr, &first.cert.pem()).await.is_err());
}
