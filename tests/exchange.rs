//! The exchange record: one per liveness request, complete, emitted
//! exactly once — for a success, each class of error, a vendor fault, a
//! client that goes away mid-upload, and a panic. The gateway runs in this
//! process (so the test can be its record sink) on a real socket, in front
//! of the real simulator.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use common::*;
use http::Request;
use livegate_core::ErrorKind;
use livegate_core::exchange::{
    ExchangeRecord, ExchangeSink, ImageFacts, Outcome, PrincipalFacts, ProtectionFacts,
    UpstreamFacts,
};
use livegate_stub::{Faults, StubConfig};
use livegate_upstream::{UpstreamError, VendorResponse};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

const VENDOR_KEY: &str = "vendor-key-exchange-5150";

/// Collects every record, as an audit sink would.
#[derive(Default)]
struct Collect(Mutex<Vec<ExchangeRecord>>);

impl ExchangeSink for Collect {
    fn emit(&self, record: ExchangeRecord) {
        self.0.lock().unwrap().push(record);
    }
}

impl Collect {
    fn with_id(&self, request_id: &str) -> Vec<ExchangeRecord> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|r| r.request_id == request_id)
            .cloned()
            .collect()
    }

    /// The records with this request id, once at least one arrived.
    async fn records_of(&self, request_id: &str) -> Vec<ExchangeRecord> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.with_id(request_id).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A second emission would come right after the first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.with_id(request_id)
    }

    /// The one record of this request, with its times checked for sanity
    /// and then zeroed, so the rest can be compared whole.
    async fn one(&self, request_id: &str, started: SystemTime) -> ExchangeRecord {
        let mut records = self.records_of(request_id).await;
        assert_eq!(records.len(), 1, "exactly one record: {records:#?}");
        let mut r = records.remove(0);
        assert!(r.started_at >= started && r.started_at <= SystemTime::now());
        assert!(r.total < Duration::from_secs(30), "{:?}", r.total);
        if let Some(u) = &mut r.upstream {
            assert!(u.latency <= r.total, "{u:?} vs {:?}", r.total);
            u.latency = Duration::ZERO;
        }
        r.started_at = SystemTime::UNIX_EPOCH;
        r.total = Duration::ZERO;
        r
    }
}

struct World {
    url: String,
    addr: std::net::SocketAddr,
    sink: Arc<Collect>,
    stub: livegate_stub::StubHandle,
    key: TestKey,
    strict: TestKey,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A gateway in front of the simulator; with `panicking_vendor`, the vendor
/// service panics instead of calling it.
async fn world(faults: Faults, panicking_vendor: bool) -> World {
    let stub = livegate_stub::spawn(StubConfig {
        faults,
        ..StubConfig::new(VENDOR_KEY)
    })
    .await
    .unwrap();
    let key = make_key();
    let strict = make_key();
    let cfg = format!(
        "{}\n{}",
        config_with_vendor(&stub.base_url(), VENDOR_KEY, ""),
        tenant_block("acme", false, &[(&key, None, false)])
            + &tenant_block("strict", false, &[(&strict, None, false)]).replace(
                "disabled = false\n",
                "disabled = false\nimages = { min_width = 640, min_height = 480 }\n"
            ),
    )
    .replace("timeout_ms = 3000", "timeout_ms = 500");
    let mut rt = livegate::runtime::build(&load_config(&cfg)).await.unwrap();
    let sink = Arc::new(Collect::default());
    rt.gateway.sink = sink.clone();
    let app = if panicking_vendor {
        let vendor = tower::service_fn(|_req: Request<Bytes>| async {
            if true {
                panic!("a bug in the vendor path");
            }
            Err::<VendorResponse, UpstreamError>(UpstreamError::Timeout)
        });
        livegate::gateway::router_with(&rt.gateway, vendor)
    } else {
        livegate::gateway::router(&rt.gateway)
    };
    let (addr, stop) = serve_in_process(rt, app).await;
    World {
        url: format!("http://{addr}/modules/liveness"),
        addr,
        sink,
        stub,
        key,
        strict,
        _stop: stop,
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn request_id(r: &Resp) -> String {
    r.headers["x-request-id"].to_str().unwrap().to_owned()
}

fn principal(key: &TestKey, tenant: &str) -> Option<PrincipalFacts> {
    Some(PrincipalFacts {
        tenant: tenant.into(),
        key_id: key.kid.clone(),
    })
}

fn jpeg_facts(bytes: &[u8], width: u32, height: u32, rewritten: bool) -> Option<ImageFacts> {
    Some(ImageFacts {
        format: "jpeg",
        width,
        height,
        size: bytes.len(),
        sha256: sha256(bytes),
        rewritten,
    })
}

/// What every record of a request the gateway refused looks like.
fn refused(request_id: String, kind: ErrorKind) -> ExchangeRecord {
    ExchangeRecord {
        request_id,
        started_at: SystemTime::UNIX_EPOCH,
        principal: None,
        image: None,
        upstream: None,
        error: Some(kind),
        cause: None,
        status: Some(kind.status().as_u16()),
        outcome: if kind.status().is_server_error() {
            Outcome::Failed
        } else {
            Outcome::Rejected
        },
        total: Duration::ZERO,
        trace_id: None,
        // Every request of the route gets its audit record's place first.
        reserved: true,
        protection: None,
    }
}

/// What the protection layer notes for a forwarded request with the
/// default policy: the perceptual replay check ran and found nothing.
fn replay_checked() -> Option<ProtectionFacts> {
    Some(ProtectionFacts {
        replay_check: Some("perceptual"),
        ..ProtectionFacts::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_and_every_class_of_refusal() {
    let w = world(Faults::default(), false).await;
    let key = w.key.plaintext.as_str();
    let jpeg = testdata("face-320x240.jpg");
    let canonical = b64(&jpeg);

    // Success, canonical: forwarded as is.
    let t0 = SystemTime::now();
    let r = post_json(&w.url, Some(key), face_json(&canonical)).await;
    assert_eq!(r.status, 200);
    let tx = r.json()["transactionId"].as_str().unwrap().to_owned();
    let rid = request_id(&r);
    let score = f64::from(livegate_stub::liveness_score(&jpeg));
    assert_eq!(
        w.sink.one(&rid, t0).await,
        ExchangeRecord {
            principal: principal(&w.key, "acme"),
            image: jpeg_facts(&jpeg, 320, 240, false),
            upstream: Some(UpstreamFacts {
                status: Some(200),
                transaction_id: Some(tx),
                score: Some(score),
                error_code: None,
                latency: Duration::ZERO,
                // The canonical body went as it came; the answer came back as it was.
                sent_bytes: face_json(&canonical).len(),
                received_bytes: r.body.len(),
            }),
            error: None,
            status: Some(200),
            outcome: Outcome::Forwarded,
            protection: replay_checked(),
            ..refused(rid, ErrorKind::Internal)
        }
    );

    // Success, a raw upload: the gateway wrote the base64.
    let t0 = SystemTime::now();
    let r = send(
        &w.url,
        "POST",
        &[("x-api-key", key), ("content-type", "image/jpeg")],
        jpeg.clone(),
    )
    .await;
    assert_eq!(r.status, 200);
    let rec = w.sink.one(&request_id(&r), t0).await;
    assert_eq!(rec.image, jpeg_facts(&jpeg, 320, 240, true));
    assert_eq!(rec.outcome, Outcome::Forwarded);

    // Authentication: no principal, nothing read.
    let t0 = SystemTime::now();
    let r = post_json(&w.url, None, face_json(&canonical)).await;
    let rid = request_id(&r);
    assert_eq!(
        w.sink.one(&rid, t0).await,
        refused(rid, ErrorKind::KeyMissing)
    );
    let t0 = SystemTime::now();
    let r = post_json(&w.url, Some(&make_key().plaintext), face_json(&canonical)).await;
    let rid = request_id(&r);
    assert_eq!(
        w.sink.one(&rid, t0).await,
        refused(rid, ErrorKind::KeyInvalid)
    );

    // The body: the tenant is known, the image is not.
    for (body, kind) in [
        ("{\"faceImage\": \"abc".to_owned(), ErrorKind::MalformedJson),
        ("{}".to_owned(), ErrorKind::FaceImageRequired),
        (face_json("*&^%"), ErrorKind::InvalidBase64),
        (face_json(&b64(b"plain text")), ErrorKind::NotAnImage),
    ] {
        let t0 = SystemTime::now();
        let r = post_json(&w.url, Some(key), body).await;
        let rid = request_id(&r);
        assert_eq!(r.error_code(), i64::from(kind.code()));
        assert_eq!(
            w.sink.one(&rid, t0).await,
            ExchangeRecord {
                principal: principal(&w.key, "acme"),
                ..refused(rid, kind)
            }
        );
    }
    let t0 = SystemTime::now();
    let r = send(
        &w.url,
        "POST",
        &[("x-api-key", key), ("content-type", "text/plain")],
        "hello",
    )
    .await;
    let rid = request_id(&r);
    assert_eq!(
        w.sink.one(&rid, t0).await,
        ExchangeRecord {
            principal: principal(&w.key, "acme"),
            ..refused(rid, ErrorKind::UnsupportedMediaType)
        }
    );

    // The tenant's image policy.
    let t0 = SystemTime::now();
    let r = post_json(&w.url, Some(&w.strict.plaintext), face_json(&canonical)).await;
    let rid = request_id(&r);
    assert_eq!(
        w.sink.one(&rid, t0).await,
        ExchangeRecord {
            principal: principal(&w.strict, "strict"),
            ..refused(rid, ErrorKind::ImageTooSmall)
        }
    );

    // The vendor's own refusal is its answer, passed on: forwarded.
    w.stub.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let t0 = SystemTime::now();
    let r = post_json(&w.url, Some(key), face_json(&canonical)).await;
    assert_eq!(r.error_code(), 1017);
    let rec = w.sink.one(&request_id(&r), t0).await;
    assert_eq!(rec.outcome, Outcome::Forwarded);
    assert_eq!((rec.status, rec.error), (Some(400), None));
    let up = rec.upstream.unwrap();
    assert_eq!(
        (up.status, up.error_code, up.score),
        (Some(400), Some(1017), None)
    );

    // Every request of this test got exactly one record.
    let all = w.sink.0.lock().unwrap().clone();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for r in &all {
        *per_id.entry(r.request_id.as_str()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 11, "{per_id:?}");
    assert!(per_id.values().all(|&n| n == 1), "{per_id:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_fault_is_recorded_with_its_cause_and_latency() {
    let w = world(
        Faults {
            timeout_rate: 1.0,
            hang: Duration::from_secs(30),
            ..Faults::default()
        },
        false,
    )
    .await;
    let jpeg = testdata("face-320x240.jpg");
    let t0 = SystemTime::now();
    let r = post_json(&w.url, Some(&w.key.plaintext), face_json(&b64(&jpeg))).await;
    assert_eq!((r.status.as_u16(), r.error_code()), (504, 50401));
    let rid = request_id(&r);
    let rec = w.sink.records_of(&rid).await;
    assert_eq!(rec.len(), 1);
    // The vendor was given its 500 ms.
    assert!(rec[0].upstream.as_ref().unwrap().latency >= Duration::from_millis(500));
    assert_eq!(
        w.sink.one(&rid, t0).await,
        ExchangeRecord {
            principal: principal(&w.key, "acme"),
            image: jpeg_facts(&jpeg, 320, 240, false),
            // The body was sent; no answer came.
            upstream: Some(UpstreamFacts {
                sent_bytes: face_json(&b64(&jpeg)).len(),
                ..UpstreamFacts::default()
            }),
            cause: Some("vendor timed out".into()),
            protection: replay_checked(),
            ..refused(rid, ErrorKind::VendorTimeout)
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_mid_upload_gets_one_record() {
    let w = world(Faults::default(), false).await;
    let t0 = SystemTime::now();
    let mut s = tokio::net::TcpStream::connect(w.addr).await.unwrap();
    let head = format!(
        "POST /modules/liveness HTTP/1.1\r\nHost: x\r\nx-request-id: gone-mid-upload\r\nx-api-key: {}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n",
        w.key.plaintext
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(b"{\"faceImage\":\"/9j/4AAQ").await.unwrap();
    s.flush().await.unwrap();
    // Let the gateway authenticate and start reading, then vanish.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);
    assert_eq!(
        w.sink.one("gone-mid-upload", t0).await,
        ExchangeRecord {
            principal: principal(&w.key, "acme"),
            ..refused("gone-mid-upload".into(), ErrorKind::BodyReadFailed)
        }
    );
    assert_eq!(w.stub.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_while_the_vendor_works_gets_one_record() {
    let w = world(Faults::default(), false).await;
    w.stub.set_faults(Faults {
        timeout_rate: 1.0,
        hang: Duration::from_secs(3),
        ..Faults::default()
    });
    let jpeg = testdata("face-320x240.jpg");
    let body = face_json(&b64(&jpeg));
    let t0 = SystemTime::now();
    let mut s = tokio::net::TcpStream::connect(w.addr).await.unwrap();
    let head = format!(
        "POST /modules/liveness HTTP/1.1\r\nHost: x\r\nx-request-id: gone-waiting\r\nx-api-key: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        w.key.plaintext,
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    while w.stub.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Abort the connection (RST), as a killed client does. A zero linger
    // does not block on drop, which is what the deprecation warns about.
    #[allow(deprecated)]
    s.set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
    let rec = w.sink.one("gone-waiting", t0).await;
    // The fingerprint runs alongside the vendor call: whether it ended
    // before the client went away is a race, but it never says more.
    let protection = rec.protection.clone();
    assert!(
        protection.is_none() || protection == replay_checked(),
        "{protection:?}"
    );
    assert_eq!(
        ExchangeRecord {
            protection: None,
            ..rec
        },
        ExchangeRecord {
            principal: principal(&w.key, "acme"),
            image: jpeg_facts(&jpeg, 320, 240, false),
            upstream: None,
            error: None,
            status: None,
            outcome: Outcome::ClientGone,
            ..refused("gone-waiting".into(), ErrorKind::Internal)
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_answered_500_with_the_request_id_and_recorded_once() {
    let w = world(Faults::default(), true).await;
    let jpeg = testdata("face-320x240.jpg");
    let t0 = SystemTime::now();
    let r = send(
        &w.url,
        "POST",
        &[
            ("x-api-key", w.key.plaintext.as_str()),
            ("content-type", "application/json"),
            ("x-request-id", "panicky-1"),
        ],
        face_json(&b64(&jpeg)),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.error_code()), (500, 50001));
    assert_eq!(r.json()["requestId"], "panicky-1");
    assert_eq!(
        w.sink.one("panicky-1", t0).await,
        ExchangeRecord {
            principal: principal(&w.key, "acme"),
            image: jpeg_facts(&jpeg, 320, 240, false),
            cause: Some("request handler panicked".into()),
            outcome: Outcome::Panicked,
            ..refused("panicky-1".into(), ErrorKind::Internal)
        }
    );
    // The gateway still serves.
    let r = send(
        &w.url.replace("/modules/liveness", "/livez"),
        "GET",
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200);
}
