//! Liveness-aware protection end to end, against real processes: the
//! gateway binary, the simulator (counting vendor calls and recording what
//! it received) and, for the shared stores, a private `redis-server` with
//! two replicas.
//!
//! - replay detection: `flag` names the earlier transaction, `reject`
//!   refuses with 409 before the vendor, a re-encoded copy is caught, other
//!   tenants' images are not compared (scope `tenant`);
//! - metadata removal: a JPEG carrying EXIF GPS tags, XMP and a comment
//!   reaches the vendor without them and with identical pixels;
//! - the score decision header and its metrics;
//! - `Idempotency-Key`: exactly one vendor call for two identical requests,
//!   sequential or concurrent, on one replica or across two sharing Redis;
//! - every protection fact in the audit record, and no image or metadata
//!   content in anything the gateway printed.

mod common;
#[path = "../crates/livegate-auth/tests/common/mod.rs"]
mod redis_common;

use std::io::Cursor;
use std::time::Duration;

use common::*;
use livegate_stub::StubConfig;

const VENDOR_KEY: &str = "vendor-key-protect-4242";

/// A JPEG re-encoded from `jpeg`'s pixels at `quality`.
fn reencode(jpeg: &[u8], quality: u8) -> Vec<u8> {
    let img = image::load_from_memory(jpeg).unwrap().to_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&img)
        .unwrap();
    out
}

/// `jpeg` with, after SOI: an EXIF APP1 holding GPS latitude tags and a
/// camera serial, an XMP APP1 and a comment — metadata a phone adds.
fn with_metadata(jpeg: &[u8]) -> Vec<u8> {
    // TIFF, little-endian: IFD0 { Orientation=1, BodySerialNumber (ASCII),
    // GPS IFD pointer }, then the GPS IFD { GPSLatitudeRef "N",
    // GPSLatitude 3 rationals }.
    let serial = b"SERIAL-LG-778899\0";
    let mut t: Vec<u8> = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    let ifd0_entries = 3u16;
    let ifd0_len = 2 + 12 * u32::from(ifd0_entries) + 4;
    let serial_at = 8 + ifd0_len;
    let gps_at = serial_at + serial.len() as u32;
    t.extend_from_slice(&ifd0_entries.to_le_bytes());
    // Orientation, SHORT, 1, value 1.
    t.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0]);
    // BodySerialNumber 0xA431, ASCII.
    t.extend_from_slice(&[0x31, 0xA4, 2, 0]);
    t.extend_from_slice(&(serial.len() as u32).to_le_bytes());
    t.extend_from_slice(&serial_at.to_le_bytes());
    // GPSInfo 0x8825, LONG, 1, offset.
    t.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0]);
    t.extend_from_slice(&gps_at.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(serial);
    let gps_len = 2 + 12 * 2 + 4;
    let rationals_at = gps_at + gps_len;
    t.extend_from_slice(&2u16.to_le_bytes());
    // GPSLatitudeRef 0x0001, ASCII, 2, "N\0".
    t.extend_from_slice(&[1, 0, 2, 0, 2, 0, 0, 0, b'N', 0, 0, 0]);
    // GPSLatitude 0x0002, RATIONAL, 3, offset.
    t.extend_from_slice(&[2, 0, 5, 0, 3, 0, 0, 0]);
    t.extend_from_slice(&rationals_at.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    for (n, d) in [(48u32, 1u32), (51, 1), (2399, 100)] {
        t.extend_from_slice(&n.to_le_bytes());
        t.extend_from_slice(&d.to_le_bytes());
    }
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend_from_slice(&t);
    let xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta><tiff:Make>LG-PHONE-MAKER</tiff:Make></x:xmpmeta>".to_vec();
    let comment = b"owner=LG-COMMENT-SECRET".to_vec();

    let mut out = jpeg[..2].to_vec();
    for (marker, payload) in [(0xE1u8, &exif), (0xE1, &xmp), (0xFE, &comment)] {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(payload);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn pixels(img: &[u8]) -> Vec<u8> {
    image::ImageReader::new(Cursor::new(img))
        .with_guessed_format()
        .unwrap()
        .decode()
        .unwrap()
        .to_rgb8()
        .into_raw()
}

fn header<'a>(r: &'a Resp, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

fn tenant_with(id: &str, key: &TestKey, protection: &str) -> String {
    let mut s = tenant_block(id, false, &[(key, None, false)]);
    if !protection.is_empty() {
        s.push_str(&format!("[tenants.protection]\n{protection}\n"));
    }
    s
}

/// A gateway configuration: the simulator as the vendor, these tenants
/// (id, key, `[tenants.protection]` lines) and any further sections.
fn config(stub: &str, tenants: &[(&str, &TestKey, &str)], sections: &str) -> String {
    let tenants: String = tenants
        .iter()
        .map(|(id, key, protection)| tenant_with(id, key, protection))
        .collect();
    format!(
        "{}\n{sections}",
        config_with_vendor(stub, VENDOR_KEY, &tenants)
    )
}

/// The `[audit]` section of a file sink at `path`.
fn audit_file(path: &std::path::Path) -> String {
    format!("[audit]\nsink = \"file\"\npath = \"{}\"\n", path.display())
}

async fn post_image(gw: &Proc, key: &str, img: &[u8], extra: &[(&str, &str)]) -> Resp {
    let mut h = vec![("content-type", "application/json"), ("x-api-key", key)];
    h.extend_from_slice(extra);
    send(
        &gw.url("/modules/liveness"),
        "POST",
        &h,
        face_json(&b64(img)),
    )
    .await
}

/// The audit file's records.
fn audit_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn audit_settled(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..200 {
        let lines = audit_lines(path);
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("audit file never had {n} records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_flagged_or_refused_per_tenant_policy() {
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    let (flag, strict) = (make_key(), make_key());
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let cfg = config(
        &stub.base_url(),
        &[
            ("flagger", &flag, ""),
            ("strict", &strict, "replay = \"reject\""),
        ],
        &audit_file(&audit),
    );
    let gw = Proc::serve(Some(&cfg), &[]);
    let face = testdata("face-640x480.jpg");
    let other = testdata("face-320x240.jpg");

    // Default policy (flag): the first is new, a re-send names it.
    let first = post_image(&gw, &flag.plaintext, &face, &[]).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(header(&first, "x-livegate-replay-of"), None);
    let txid = header(&first, "x-transaction-id").unwrap().to_owned();
    let again = post_image(&gw, &flag.plaintext, &face, &[]).await;
    assert_eq!(again.status, 200);
    assert_eq!(header(&again, "x-livegate-replay-of"), Some(txid.as_str()));
    // A copy re-encoded at another quality is a perceptual replay.
    let copy = post_image(&gw, &flag.plaintext, &reencode(&face, 70), &[]).await;
    assert_eq!(copy.status, 200);
    assert_eq!(header(&copy, "x-livegate-replay-of"), Some(txid.as_str()));
    // A different photo is not.
    let distinct = post_image(&gw, &flag.plaintext, &other, &[]).await;
    assert_eq!(header(&distinct, "x-livegate-replay-of"), None);
    assert_eq!(stub.calls(), 4, "flagged replays are still forwarded");

    // Reject: the other tenant's images are not its own (scope tenant) ...
    let own = post_image(&gw, &strict.plaintext, &face, &[]).await;
    assert_eq!(own.status, 200, "another tenant's image is no replay");
    assert_eq!(header(&own, "x-livegate-replay-of"), None);
    let strict_txid = header(&own, "x-transaction-id").unwrap().to_owned();
    // ... but its own re-send is refused before the vendor.
    let calls = stub.calls();
    let refused = post_image(&gw, &strict.plaintext, &face, &[]).await;
    assert_eq!(refused.status, 409, "{:?}", refused.body);
    assert_eq!(refused.error_code(), 40903);
    assert_eq!(
        header(&refused, "x-livegate-replay-of"),
        Some(strict_txid.as_str())
    );
    let copy = post_image(&gw, &strict.plaintext, &reencode(&face, 60), &[]).await;
    assert_eq!(copy.status, 409);
    assert_eq!(stub.calls(), calls, "no vendor call for a refused replay");

    // The audit trail names the earlier transaction and the kind of match.
    let lines = audit_settled(&audit, 7).await;
    let flagged: Vec<_> = lines
        .iter()
        .filter(|l| l["replayOf"] == txid.as_str())
        .collect();
    assert_eq!(flagged.len(), 2, "{lines:?}");
    assert_eq!(flagged[0]["replayMatch"], "exact");
    assert_eq!(flagged[0]["replayDistance"], 0);
    assert_eq!(flagged[1]["replayMatch"], "perceptual");
    let rejected: Vec<_> = lines.iter().filter(|l| l["errorCode"] == 40903).collect();
    assert_eq!(rejected.len(), 2);
    assert!(
        rejected
            .iter()
            .all(|l| l["replayOf"] == strict_txid.as_str())
    );

    // And the metrics count them by kind and action.
    let m = send(&gw.ops_url("/metrics"), "GET", &[], Vec::new()).await;
    let text = String::from_utf8_lossy(&m.body);
    for want in [
        r#"livegate_replays_total{tenant="flagger",kind="exact",action="flag"} 1"#,
        r#"livegate_replays_total{tenant="flagger",kind="perceptual",action="flag"} 1"#,
        r#"livegate_replays_total{tenant="strict",kind="exact",action="reject"} 1"#,
        r#"livegate_replays_total{tenant="strict",kind="perceptual",action="reject"} 1"#,
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}

/// Under `global` scope a match with another tenant's image is reported as
/// `other-tenant`, never by that tenant's transactionId; a tenant's own
/// matches still name theirs. Every match has `replayCheck` in its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_scope_never_names_another_tenants_transaction() {
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    let (a, b) = (make_key(), make_key());
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let global = "replay_scope = \"global\"";
    let cfg = config(
        &stub.base_url(),
        &[("acme", &a, global), ("globex", &b, global)],
        &audit_file(&audit),
    );
    let gw = Proc::serve(Some(&cfg), &[]);
    let face = testdata("face-640x480.jpg");

    let first = post_image(&gw, &a.plaintext, &face, &[]).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let txid = header(&first, "x-transaction-id").unwrap().to_owned();
    // Another tenant: the match is reported, its owner's id is not.
    let theirs = post_image(&gw, &b.plaintext, &reencode(&face, 70), &[]).await;
    assert_eq!(theirs.status, 200);
    assert_eq!(
        header(&theirs, "x-livegate-replay-of"),
        Some("other-tenant")
    );
    let theirs_exact = post_image(&gw, &b.plaintext, &face, &[]).await;
    assert_eq!(
        header(&theirs_exact, "x-livegate-replay-of"),
        Some("other-tenant")
    );
    // The owner's own re-send names its transaction.
    let own = post_image(&gw, &a.plaintext, &face, &[]).await;
    assert_eq!(header(&own, "x-livegate-replay-of"), Some(txid.as_str()));

    let lines = audit_settled(&audit, 4).await;
    let of_globex: Vec<_> = lines.iter().filter(|l| l["tenant"] == "globex").collect();
    assert_eq!(of_globex.len(), 2);
    for l in &of_globex {
        assert_eq!(l["replayOf"], "other-tenant", "{l}");
        assert_eq!(l["replayCheck"], "perceptual", "{l}");
    }
    let everything = format!(
        "{}{}",
        gw.output(),
        std::fs::read_to_string(&audit).unwrap()
    );
    let globex_lines: String = of_globex.iter().map(|l| l.to_string()).collect();
    assert!(
        !globex_lines.contains(&txid),
        "globex's records name acme's transaction"
    );
    assert!(everything.contains(&txid), "acme's own records do");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_removed_losslessly_before_the_vendor() {
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY).recording())
        .await
        .unwrap();
    let (on, off, inline) = (make_key(), make_key(), make_key());
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let cfg = config(
        &stub.base_url(),
        &[
            ("stripped", &on, ""),
            ("kept", &off, "strip_metadata = false"),
            // No fingerprint to take: removal runs in the request's task.
            ("stripped-inline", &inline, "replay = \"off\""),
        ],
        &audit_file(&audit),
    );
    let gw = Proc::serve(Some(&cfg), &[]);
    let plain = testdata("face-640x480.jpg");
    let tagged = with_metadata(&plain);
    assert!(image::load_from_memory(&tagged).is_ok(), "a valid JPEG");

    let r = post_image(&gw, &on.plaintext, &tagged, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let body = stub.last_body().expect("recorded");
    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let forwarded = base64_simd::STANDARD
        .decode_to_vec(sent["faceImage"].as_str().unwrap())
        .unwrap();
    for secret in [
        &b"SERIAL-LG-778899"[..],
        b"LG-PHONE-MAKER",
        b"LG-COMMENT-SECRET",
        b"Exif\0\0",
        b"http://ns.adobe.com/xap",
    ] {
        assert!(
            !forwarded.windows(secret.len()).any(|w| w == secret),
            "{:?} reached the vendor",
            String::from_utf8_lossy(secret)
        );
    }
    assert!(forwarded.len() < tagged.len());
    assert_eq!(pixels(&forwarded), pixels(&tagged), "pixels untouched");
    assert_eq!(pixels(&forwarded), pixels(&plain));

    // A tenant that keeps metadata forwards the image as it came.
    let r = post_image(&gw, &off.plaintext, &tagged, &[]).await;
    assert_eq!(r.status, 200);
    let sent: serde_json::Value = serde_json::from_slice(&stub.last_body().unwrap()).unwrap();
    assert_eq!(sent["faceImage"].as_str().unwrap(), b64(&tagged));

    // Without replay detection, the same removal, byte for byte.
    let r = post_image(&gw, &inline.plaintext, &tagged, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(stub.last_body().unwrap(), body);

    // The audit record says what kinds were removed, never what they said.
    let lines = audit_settled(&audit, 3).await;
    let removed = &lines[0]["metadataRemoved"];
    let kinds: Vec<&str> = removed
        .as_array()
        .unwrap_or_else(|| panic!("{:?}", lines[0]))
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"exif") && kinds.contains(&"xmp") && kinds.contains(&"comment"));
    assert!(lines[1]["metadataRemoved"].is_null());
    assert_eq!(lines[2]["metadataRemoved"], lines[0]["metadataRemoved"]);
    // Nothing the gateway printed or recorded holds the metadata.
    let everything = format!(
        "{}{}",
        gw.output(),
        std::fs::read_to_string(&audit).unwrap()
    );
    for secret in ["SERIAL-LG-778899", "LG-PHONE-MAKER", "LG-COMMENT-SECRET"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_score_threshold_answers_a_decision_header() {
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    let (judged, plain) = (make_key(), make_key());
    let cfg = config(
        &stub.base_url(),
        &[
            ("judged", &judged, "score_threshold = 60\nreview_band = 25"),
            ("plain", &plain, ""),
        ],
        "",
    );
    let gw = Proc::serve(Some(&cfg), &[]);
    let base = testdata("face-640x480.jpg");
    let mut seen = std::collections::BTreeMap::new();
    // Different bytes give different simulated scores.
    for q in [50u8, 60, 70, 75, 80, 85, 90, 95] {
        let img = reencode(&base, q);
        let r = post_image(&gw, &judged.plaintext, &img, &[]).await;
        assert_eq!(r.status, 200);
        let score = r.json()["result"]["liveness_score"].as_f64().unwrap();
        let want = if score >= 60.0 {
            "pass"
        } else if score >= 35.0 {
            "review"
        } else {
            "fail"
        };
        assert_eq!(
            header(&r, "x-livegate-decision"),
            Some(want),
            "score {score}"
        );
        *seen.entry(want).or_insert(0) += 1;
        // The vendor's body is untouched: no decision in it.
        assert!(r.json().get("decision").is_none());
    }
    let r = post_image(&gw, &plain.plaintext, &base, &[]).await;
    assert_eq!(
        header(&r, "x-livegate-decision"),
        None,
        "no threshold, no decision"
    );

    let m = send(&gw.ops_url("/metrics"), "GET", &[], Vec::new()).await;
    let text = String::from_utf8_lossy(&m.body);
    for (decision, n) in &seen {
        let want =
            format!(r#"livegate_decisions_total{{tenant="judged",decision="{decision}"}} {n}"#);
        assert!(text.contains(&want), "{want} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_gets_one_vendor_call() {
    // Slow enough that two concurrent requests overlap.
    let mut sim = StubConfig::new(VENDOR_KEY);
    sim.latency = Duration::from_millis(400);
    let stub = livegate_stub::spawn(sim).await.unwrap();
    let key = make_key();
    let cfg = config(&stub.base_url(), &[("acme", &key, "")], "");
    let gw = Proc::serve(Some(&cfg), &[]);
    let face = testdata("face-640x480.jpg");
    let k = &key.plaintext;

    // Sequential: the retry gets the stored answer.
    let first = post_image(&gw, k, &face, &[("idempotency-key", "order-1")]).await;
    assert_eq!(first.status, 200);
    let retry = post_image(&gw, k, &face, &[("idempotency-key", "order-1")]).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.body, first.body);
    assert_eq!(header(&retry, "x-livegate-idempotent-replay"), Some("true"));
    assert_eq!(header(&first, "x-livegate-idempotent-replay"), None);
    assert_eq!(
        header(&retry, "x-transaction-id"),
        header(&first, "x-transaction-id")
    );
    assert_eq!(stub.calls(), 1);

    // Concurrent: the duplicate waits for the first instead of calling.
    let other = testdata("face-320x240.jpg");
    let (a, b) = tokio::join!(
        post_image(&gw, k, &other, &[("idempotency-key", "order-2")]),
        post_image(&gw, k, &other, &[("idempotency-key", "order-2")]),
    );
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    assert_eq!(a.body, b.body);
    assert_eq!(
        stub.calls(),
        2,
        "one vendor call for two concurrent requests"
    );

    // The key with another image is refused; a bad key too.
    let r = post_image(&gw, k, &other, &[("idempotency-key", "order-1")]).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.error_code(), 42207);
    let long = "k".repeat(256);
    let r = post_image(&gw, k, &face, &[("idempotency-key", long.as_str())]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), 40009);
    assert_eq!(stub.calls(), 2);

    let m = send(&gw.ops_url("/metrics"), "GET", &[], Vec::new()).await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains(r#"livegate_idempotent_replays_total{tenant="acme"} 2"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_replays_and_idempotency_through_redis() {
    let redis = redis_common::Server::start(&[]);
    let mut sim = StubConfig::new(VENDOR_KEY);
    sim.latency = Duration::from_millis(400);
    let stub = livegate_stub::spawn(sim).await.unwrap();
    let key = make_key();
    let cfg = config(
        &stub.base_url(),
        &[("acme", &key, "")],
        &format!("[redis]\nurl = \"{}\"\n", redis.url()),
    );
    let a = Proc::serve(Some(&cfg), &[]);
    let b = Proc::serve(Some(&cfg), &[]);
    let k = &key.plaintext;
    let face = testdata("face-640x480.jpg");

    // The same key on both replicas at once: one vendor call.
    let (ra, rb) = tokio::join!(
        post_image(&a, k, &face, &[("idempotency-key", "shared-1")]),
        post_image(&b, k, &face, &[("idempotency-key", "shared-1")]),
    );
    assert_eq!(
        (ra.status.as_u16(), rb.status.as_u16()),
        (200, 200),
        "{:?} {:?}",
        ra.body,
        rb.body
    );
    assert_eq!(ra.body, rb.body);
    assert_eq!(stub.calls(), 1);

    // A replay on B of what A forwarded is flagged with A's transaction.
    let txid = header(&ra, "x-transaction-id").unwrap().to_owned();
    let again = post_image(&b, k, &reencode(&face, 75), &[]).await;
    assert_eq!(header(&again, "x-livegate-replay-of"), Some(txid.as_str()));

    // Redis holds hashes and ids, never the image nor the raw key.
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.iter().any(|k| k.contains("replay")), "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains("shared-1")), "{keys:?}");
    let b64_head = &b64(&face)[..64];
    for k in &keys {
        let dump: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        let dump = dump.unwrap_or_default();
        assert!(
            !dump.windows(64).any(|w| w == b64_head.as_bytes()),
            "image in {k}"
        );
        assert!(
            !dump.windows(16).any(|w| w == &face[100..116]),
            "image bytes in {k}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_protection_store_is_skipped_or_refused_per_fail_mode() {
    let mut redis = redis_common::Server::start(&[]);
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY))
        .await
        .unwrap();
    let key = make_key();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let cfg = config(
        &stub.base_url(),
        &[("acme", &key, "")],
        &format!("[redis]\nurl = \"{}\"\n{}", redis.url(), audit_file(&audit)),
    );
    let open = Proc::serve(Some(&cfg), &[]);
    let closed = Proc::serve(Some(&cfg), &[("LIVEGATE_REDIS__FAIL_MODE", "closed")]);
    let face = testdata("face-640x480.jpg");
    let k = &key.plaintext;
    // Both replicas verify the key while Redis is up (they keep it).
    for gw in [&open, &closed] {
        let r = post_image(gw, k, &face, &[]).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    redis.kill();

    // fail_mode local: the checks are skipped, the answer is the vendor's.
    let calls = stub.calls();
    let r = post_image(&open, k, &face, &[("idempotency-key", "down-1")]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        header(&r, "x-livegate-replay-of"),
        None,
        "no store, no match"
    );
    assert_eq!(stub.calls(), calls + 1);
    let m = send(&open.ops_url("/metrics"), "GET", &[], Vec::new()).await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains(r#"livegate_protection_store_errors_total{tenant="acme"} 1"#),
        "{text}"
    );
    let lines = audit_settled(&audit, 3).await;
    let skipped: Vec<_> = lines
        .iter()
        .filter(|l| l["protectionStoreError"] == true)
        .collect();
    assert_eq!(skipped.len(), 1, "{lines:?}");
    assert_eq!(skipped[0]["status"], 200);

    // fail_mode closed: refused before the vendor, with Retry-After.
    let r = post_image(&closed, k, &face, &[]).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.error_code(), 50306);
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(stub.calls(), calls + 1, "no vendor call");
}
