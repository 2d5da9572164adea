//! End to end: the real `livegate` binary in front of the strict simulator,
//! over real sockets. One gateway process serves every scenario so that
//! the final check can grep everything it printed for secrets and images.

mod common;

use common::*;
use livegate_stub::StubConfig;

const VENDOR_KEY: &str = "vendor-key-e2e-4f9a1c7b2d";

struct World {
    gw: Proc,
    stub: livegate_stub::StubHandle,
    good: TestKey,
    disabled: TestKey,
    expired: TestKey,
    revoked: TestKey,
    strict: TestKey,
    gifs: TestKey,
}

async fn world() -> World {
    let stub = livegate_stub::spawn(StubConfig::new(VENDOR_KEY).recording())
        .await
        .unwrap();
    let good = make_key();
    let disabled = make_key();
    let expired = make_key();
    let revoked = make_key();
    let strict = make_key();
    let gifs = make_key();
    let tenants = format!(
        "{}{}{}{}",
        tenant_block(
            "acme",
            false,
            &[
                (&good, Some("2999-01-01T00:00:00Z"), false),
                (&expired, Some("2020-01-01T00:00:00Z"), false),
                (&revoked, None, true),
            ]
        ),
        tenant_block("blocked", true, &[(&disabled, None, false)]),
        // The vendor's recommended minimum, enforced for one tenant.
        tenant_block("strict", false, &[(&strict, None, false)]).replace(
            "disabled = false\n",
            "disabled = false\nimages = { min_width = 640, min_height = 480 }\n"
        ),
        tenant_block("gifs", false, &[(&gifs, None, false)]).replace(
            "disabled = false\n",
            "disabled = false\nimages = { formats = [\"jpeg\", \"gif\"] }\n"
        ),
    );
    let config = config_with_vendor(&stub.base_url(), VENDOR_KEY, &tenants);
    let gw = Proc::serve(Some(&config), &[]);
    World {
        gw,
        stub,
        good,
        disabled,
        expired,
        revoked,
        strict,
        gifs,
    }
}

/// Line-wraps at 76 columns with CRLF, as MIME encoders do.
fn mime_wrap(s: &str) -> String {
    s.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn url_safe(s: &str) -> String {
    s.replace('+', "-").replace('/', "_")
}

/// Escapes CR/LF for a JSON string literal.
fn json_escape(s: &str) -> String {
    s.replace('\r', "\\r").replace('\n', "\\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_against_the_strict_simulator() {
    let w = world().await;
    let url = w.gw.url("/modules/liveness");
    let key = w.good.plaintext.as_str();

    // --- Success paths --------------------------------------------------
    // A JPEG whose base64 has '+' or '/', and padding, so every variant
    // below really differs from the canonical form.
    let jpeg = testdata("face-320x240.jpg");
    let canonical = b64(&jpeg);
    assert!(canonical.contains('+') || canonical.contains('/'));
    assert!(canonical.ends_with('='), "fixture should need padding");

    // Canonical JSON: forwarded byte-identical.
    let body = face_json(&canonical);
    let before = w.stub.calls();
    let r = post_json(&url, Some(key), body.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = r.json();
    let score = v["result"]["liveness_score"].as_u64().unwrap();
    assert_eq!(score, u64::from(livegate_stub::liveness_score(&jpeg)));
    let tx = v["transactionId"].as_str().unwrap();
    assert_eq!(r.headers["x-transaction-id"], tx);
    assert!(!r.headers["x-request-id"].is_empty());
    assert_eq!(w.stub.calls(), before + 1);
    assert_eq!(
        w.stub.last_body().unwrap(),
        body.as_bytes(),
        "canonical body must be forwarded byte-identical"
    );

    // The vendor sees the vendor key and never the tenant key.
    let seen = w.stub.last_headers().unwrap();
    assert_eq!(seen["x-api-key"], VENDOR_KEY);
    assert!(seen.get("authorization").is_none());
    for (name, value) in &seen {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!value.contains(key), "tenant key forwarded in {name}");
        assert!(
            !value.contains(&w.good.kid),
            "tenant key id forwarded in {name}"
        );
    }

    // None of the client's own headers reaches the vendor: only what the
    // gateway puts on the vendor request.
    let r = send(
        &url,
        "POST",
        &[
            ("content-type", "application/json"),
            ("x-api-key", key),
            ("idempotency-key", "client-idem-1"),
            ("cookie", "session=client-cookie"),
            ("x-client-header", "client-value"),
            ("accept-encoding", "gzip"),
            ("x-forwarded-for", "192.0.2.7"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = w.stub.last_headers().unwrap();
    let allowed = [
        "host",
        "content-length",
        "content-type",
        "user-agent",
        "x-api-key",
        "traceparent",
        "tracestate",
    ];
    for name in seen.keys() {
        assert!(
            allowed.contains(&name.as_str()),
            "the client's `{name}` reached the vendor"
        );
    }
    assert_eq!(seen["content-type"], "application/json");

    // Non-canonical variants: refused by the strict simulator directly,
    // accepted through the gateway, which forwards the canonical form.
    let wrapped = mime_wrap(&canonical);
    let variants = [
        (
            "data-uri prefix",
            format!("data:image/jpeg;base64,{canonical}"),
        ),
        ("bare prefix", format!("image/jpeg;base64,{canonical}")),
        ("mime line-wrapped", wrapped.clone()),
        (
            "lf-wrapped with spaces",
            format!("  {}  ", wrapped.replace("\r\n", "\n ")),
        ),
        ("url-safe", url_safe(&canonical)),
        ("unpadded", canonical.trim_end_matches('=').to_owned()),
        (
            "everything at once",
            format!(
                "data:image/jpeg;base64,{}",
                mime_wrap(&url_safe(canonical.trim_end_matches('=')))
            ),
        ),
    ];
    let vendor_url = w.stub.liveness_url();
    for (name, variant) in &variants {
        assert_ne!(variant, &canonical);
        let body = face_json(&json_escape(variant));
        let direct = send(
            &vendor_url,
            "POST",
            &[
                ("content-type", "application/json"),
                ("x-api-key", VENDOR_KEY),
            ],
            body.clone(),
        )
        .await;
        assert_eq!(
            direct.error_code(),
            1017,
            "{name}: the simulator must refuse it directly"
        );

        let r = post_json(&url, Some(key), body).await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
        assert_eq!(
            r.json()["result"]["liveness_score"].as_u64(),
            Some(score),
            "{name}"
        );
        assert_eq!(
            w.stub.last_body().unwrap(),
            face_json(&canonical).as_bytes(),
            "{name}: the vendor must get the canonical form"
        );
    }

    // Authorization: Bearer works too.
    let bearer = format!("Bearer {key}");
    let r = send(
        &url,
        "POST",
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ],
        face_json(&canonical),
    )
    .await;
    assert_eq!(r.status, 200);

    // Other formats: PNG, WebP (lossy, lossless, extended), raw bodies, multipart.
    for f in [
        "face-320x240.png",
        "face-320x240.webp",
        "face-320x240-lossless.webp",
        "face-320x240-alpha.webp",
        "face-640x480.jpg",
    ] {
        let img = testdata(f);
        let r = post_json(&url, Some(key), face_json(&b64(&img))).await;
        assert_eq!(r.status, 200, "{f}: {:?}", r.body);
    }
    for (f, ct) in [
        ("face-320x240.jpg", "image/jpeg"),
        ("face-320x240.png", "image/png"),
    ] {
        let img = testdata(f);
        let r = send(
            &url,
            "POST",
            &[("x-api-key", key), ("content-type", ct)],
            img.clone(),
        )
        .await;
        assert_eq!(r.status, 200, "raw {ct}: {:?}", r.body);
        assert_eq!(
            w.stub.last_body().unwrap(),
            face_json(&b64(&img)).as_bytes()
        );
    }
    let boundary = "XyZ-boundary-123";
    let mut form = Vec::new();
    form.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n")
            .as_bytes(),
    );
    form.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"faceImage\"; filename=\"me.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").as_bytes());
    form.extend_from_slice(&jpeg);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    let r = send(
        &url,
        "POST",
        &[("x-api-key", key), ("content-type", ct.as_str())],
        form,
    )
    .await;
    assert_eq!(r.status, 200, "multipart: {:?}", r.body);
    assert_eq!(
        w.stub.last_body().unwrap(),
        face_json(&canonical).as_bytes()
    );

    // Per-tenant image policies.
    let strict = w.strict.plaintext.as_str();
    let r = post_json(&url, Some(strict), face_json(&canonical)).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (422, 42205),
        "320x240 is under this tenant's 640x480"
    );
    let r = post_json(
        &url,
        Some(strict),
        face_json(&b64(&testdata("face-640x480.jpg"))),
    )
    .await;
    assert_eq!(r.status, 200);
    let gifs = w.gifs.plaintext.as_str();
    let calls = w.stub.calls();
    let r = post_json(
        &url,
        Some(gifs),
        face_json(&b64(&testdata("face-256x256.gif"))),
    )
    .await;
    // Accepted by this tenant's policy, so forwarded; the vendor refuses GIF itself.
    assert_eq!((r.status.as_u16(), r.error_code()), (400, 1017));
    assert_eq!(w.stub.calls(), calls + 1);
    let r = post_json(
        &url,
        Some(gifs),
        face_json(&b64(&testdata("face-320x240.png"))),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (422, 42203),
        "PNG is not in this tenant's list"
    );

    // --- Bad input: each a documented 4xx, none forwarded ----------------
    let calls_before_bad = w.stub.calls();
    let gif = testdata("face-256x256.gif");
    let pdf = testdata("not-image.pdf");
    let txt = testdata("not-image.txt");
    let truncated = testdata("truncated.jpg");
    let small = testdata("small-100x100.jpg");
    let wide = testdata("wide-9000x200.png");
    let unknown = make_key();
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let nested_in_object = format!(
        r#"{{"faceImage":"{canonical}","x":{}1{}}}"#,
        "{\"a\":".repeat(5_000),
        "}".repeat(5_000)
    );
    let json = "application/json";

    // (name, headers, body, HTTP status, errorCode)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, u16, i64);
    let cases: Vec<Case<'_>> = vec![
        ("no key", vec![("content-type", json.into())], face_json(&canonical).into(), 401, 40101),
        ("empty key", vec![("content-type", json.into()), ("x-api-key", String::new())], face_json(&canonical).into(), 401, 40101),
        ("unknown key", vec![("content-type", json.into()), ("x-api-key", unknown.plaintext.clone())], face_json(&canonical).into(), 401, 40102),
        ("garbage key", vec![("content-type", json.into()), ("x-api-key", "hunter2".into())], face_json(&canonical).into(), 401, 40102),
        ("right kid, wrong secret", vec![("content-type", json.into()), ("x-api-key", format!("{}{}", &key[..key.len() - 4], "AAAA"))], face_json(&canonical).into(), 401, 40102),
        ("disabled tenant", vec![("content-type", json.into()), ("x-api-key", w.disabled.plaintext.clone())], face_json(&canonical).into(), 403, 40301),
        ("expired key", vec![("content-type", json.into()), ("x-api-key", w.expired.plaintext.clone())], face_json(&canonical).into(), 401, 40104),
        ("revoked key", vec![("content-type", json.into()), ("x-api-key", w.revoked.plaintext.clone())], face_json(&canonical).into(), 401, 40103),
        ("two different keys", vec![("content-type", json.into()), ("x-api-key", key.into()), ("authorization", format!("Bearer {}", w.expired.plaintext))], face_json(&canonical).into(), 401, 40105),
        ("malformed json", vec![("content-type", json.into()), ("x-api-key", key.into())], br#"{"faceImage": "abc"#.to_vec(), 400, 40001),
        ("json not an object", vec![("content-type", json.into()), ("x-api-key", key.into())], b"[1,2,3]".to_vec(), 400, 40002),
        ("faceImage missing", vec![("content-type", json.into()), ("x-api-key", key.into())], br#"{"image":"abc"}"#.to_vec(), 400, 1016),
        ("faceImage null", vec![("content-type", json.into()), ("x-api-key", key.into())], br#"{"faceImage":null}"#.to_vec(), 400, 1016),
        ("faceImage empty", vec![("content-type", json.into()), ("x-api-key", key.into())], br#"{"faceImage":""}"#.to_vec(), 400, 1016),
        ("faceImage number", vec![("content-type", json.into()), ("x-api-key", key.into())], br#"{"faceImage":12345}"#.to_vec(), 400, 40003),
        ("faceImage array", vec![("content-type", json.into()), ("x-api-key", key.into())], br#"{"faceImage":["QUJD"]}"#.to_vec(), 400, 40003),
        ("invalid base64 chars", vec![("content-type", json.into()), ("x-api-key", key.into())], face_json("QUJD*&^%$#@!").into(), 422, 42201),
        ("base64 of text", vec![("content-type", json.into()), ("x-api-key", key.into())], face_json(&b64(&txt)).into(), 422, 42202),
        ("base64 of a pdf", vec![("content-type", json.into()), ("x-api-key", key.into())], face_json(&b64(&pdf)).into(), 422, 42202),
        ("gif not enabled", vec![("content-type", json.into()), ("x-api-key", key.into())], face_json(&b64(&gif)).into(), 422, 42203),
        ("truncated jpeg header", vec![("content-type", json.into()), ("x-api-key", key.into())], face_json(&b64(&truncated)).into(), 422, 42204),
        ("image too small", vec![("content-type", json.into()), ("x-api-key", key.into())], face_json(&b64(&small)).into(), 422, 42205),
        ("image too large", vec![("content-type", json.into()), ("x-api-key", key.into())], face_json(&b64(&wide)).into(), 422, 42206),
        ("wrong content type", vec![("content-type", "text/plain".into()), ("x-api-key", key.into())], face_json(&canonical).into(), 415, 41501),
        ("form-urlencoded", vec![("content-type", "application/x-www-form-urlencoded".into()), ("x-api-key", key.into())], format!("faceImage={canonical}").into(), 415, 41501),
        ("prefix with no data", vec![("content-type", json.into()), ("x-api-key", key.into())], face_json("data:image/jpeg;base64,").into(), 400, 1016),
        ("zero-byte body", vec![("content-type", json.into()), ("x-api-key", key.into())], Vec::new(), 400, 1016),
        ("zero-byte raw image", vec![("content-type", "image/jpeg".into()), ("x-api-key", key.into())], Vec::new(), 400, 1016),
        ("raw text as image/png", vec![("content-type", "image/png".into()), ("x-api-key", key.into())], txt.clone(), 422, 42202),
        ("deeply nested json", vec![("content-type", json.into()), ("x-api-key", key.into())], nested.into(), 400, 40001),
        ("deeply nested member", vec![("content-type", json.into()), ("x-api-key", key.into())], nested_in_object.into(), 400, 40001),
        ("duplicate faceImage", vec![("content-type", json.into()), ("x-api-key", key.into())], format!(r#"{{"faceImage":"{canonical}","faceImage":"{canonical}"}}"#).into(), 400, 40004),
        ("multipart without the part", vec![("content-type", format!("multipart/form-data; boundary={boundary}")), ("x-api-key", key.into())], format!("--{boundary}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--{boundary}--\r\n").into(), 400, 1016),
        ("multipart garbage", vec![("content-type", format!("multipart/form-data; boundary={boundary}")), ("x-api-key", key.into())], b"this is not multipart".to_vec(), 400, 40005),
    ];
    for (name, headers, body, status, code) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = send(&url, "POST", &h, body).await;
        assert_eq!(
            r.status.as_u16(),
            status,
            "{name}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        assert_eq!(v["errorCode"].as_i64(), Some(code), "{name}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}"
        );
        assert_eq!(
            v["requestId"].as_str(),
            r.headers["x-request-id"].to_str().ok(),
            "{name}"
        );
    }

    // Over the limit, answered before the body is sent: a 20 MB
    // single-line string declared with `Expect: 100-continue`, as curl
    // sends large uploads. The 413 comes instead of the 100 Continue.
    let addr = w.gw.addr;
    let twenty_mb = face_json(&"A".repeat(20 * 1024 * 1024));
    let head = format!(
        "POST /modules/liveness HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        twenty_mb.len()
    );
    let out = raw_exchange(addr, &head, &[]).await;
    assert!(out.starts_with("HTTP/1.1 413"), "20 MB declared: {out}");
    assert!(
        !out.contains("100 Continue") && out.contains("41301"),
        "{out}"
    );

    // The same without Expect: refused on the declared length, without
    // waiting for the body.
    let head = format!(
        "POST /modules/liveness HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ncontent-length: 50000000\r\n\r\n"
    );
    let out = raw_exchange(addr, &head, &[]).await;
    assert!(
        out.starts_with("HTTP/1.1 413"),
        "declared over the limit: {out}"
    );

    // Chunked, no Content-Length: only reading tells. The client sends
    // 10 MiB + 1 byte of body and waits; the gateway stops at the limit.
    let head = format!(
        "POST /modules/liveness HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let limit = 10 * 1024 * 1024;
    let mut body: Vec<u8> = Vec::new();
    body.extend_from_slice(b"e\r\n{\"faceImage\":\"\r\n");
    let rest = limit + 1 - 14;
    body.extend_from_slice(format!("{rest:x}\r\n").as_bytes());
    body.resize(body.len() + rest, b'A');
    body.extend_from_slice(b"\r\n");
    let out = raw_exchange(addr, &head, &[&body]).await;
    assert!(
        out.starts_with("HTTP/1.1 413"),
        "chunked over the limit: {}",
        &out[..out.len().min(300)]
    );
    assert!(out.contains("41301"));

    // A Content-Length that lies low: the body is what it declares (a cut
    // JSON document); what follows is not body: a 400, never a 500.
    let head = format!(
        "POST /modules/liveness HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n"
    );
    let lying = face_json(&"A".repeat(1000));
    let out = raw_exchange(addr, &head, &[lying.as_bytes()]).await;
    assert!(
        out.starts_with("HTTP/1.1 400"),
        "lying low content-length: {}",
        &out[..out.len().min(300)]
    );
    assert!(out.contains("40001"));

    // A Content-Length that lies high: the client stops early.
    let head = format!(
        "POST /modules/liveness HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n"
    );
    let out = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(b"{\"faceImage\":\"QUJD").await.unwrap();
        s.shutdown().await.unwrap();
        let mut buf = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        String::from_utf8_lossy(&buf).into_owned()
    };
    assert!(
        out.is_empty() || out.starts_with("HTTP/1.1 400"),
        "lying high content-length: {out}"
    );
    assert!(!out.contains(" 500 "));

    assert_eq!(
        w.stub.calls(),
        calls_before_bad,
        "a bad request reached the vendor"
    );

    // Unknown route and method: JSON errors too.
    let r = send(&w.gw.url("/nope"), "GET", &[], Vec::new()).await;
    assert_eq!((r.status.as_u16(), r.error_code()), (404, 40401));
    let r = send(&url, "GET", &[("x-api-key", key)], Vec::new()).await;
    assert_eq!((r.status.as_u16(), r.error_code()), (405, 40501));

    // A client's plain request id is kept; an unsafe one is replaced.
    let r = send(
        &url,
        "POST",
        &[("x-request-id", "client-id-42")],
        Vec::new(),
    )
    .await;
    assert_eq!(r.headers["x-request-id"], "client-id-42");
    assert_eq!(r.json()["requestId"], "client-id-42");
    let r = send(
        &url,
        "POST",
        &[("x-request-id", "<script>alert(1)</script>")],
        Vec::new(),
    )
    .await;
    assert_ne!(r.headers["x-request-id"], "<script>alert(1)</script>");
    assert!(!String::from_utf8_lossy(&r.body).contains("script"));

    // A key put in the query string or the path by a confused client is
    // not logged either.
    let r = send(
        &format!("{url}?api_key=QUERYSECRET31337"),
        "POST",
        &[("x-api-key", key), ("content-type", "image/jpeg")],
        jpeg.clone(),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send(&w.gw.url("/v1/PATHSECRET31337"), "GET", &[], Vec::new()).await;
    assert_eq!(r.status, 404);

    // Probes.
    let r = send(&w.gw.url("/livez"), "GET", &[], Vec::new()).await;
    assert_eq!(r.status, 200);
    let r = send(&w.gw.url("/readyz"), "GET", &[], Vec::new()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["mode"], "vendor");

    // --- Nothing secret in anything the process printed ----------------
    let mut gw = w.gw;
    assert!(gw.terminate().success());
    let output = gw.output();
    assert!(output.contains("livegate listening"), "output was captured");
    assert!(
        output.contains("authentication refused"),
        "refusals are logged (without keys)"
    );
    let mut secrets = vec![
        ("vendor key", VENDOR_KEY.to_owned()),
        ("pepper", PEPPER.to_owned()),
        ("tenant key", w.good.plaintext.clone()),
        ("disabled tenant key", w.disabled.plaintext.clone()),
        ("expired key", w.expired.plaintext.clone()),
        ("revoked key", w.revoked.plaintext.clone()),
        ("unknown key", unknown.plaintext.clone()),
        ("garbage key", "hunter2".to_owned()),
        ("key in a query string", "QUERYSECRET31337".to_owned()),
        ("key in a path", "PATHSECRET31337".to_owned()),
    ];
    for (name, k) in [("tenant", &w.good), ("expired", &w.expired)] {
        let secret = k.plaintext.rsplit('_').next().unwrap().to_owned();
        secrets.push((name, secret));
    }
    // Any 32-character window of the image's base64 (canonical and URL-safe).
    for (i, window) in [
        (0, 32),
        (canonical.len() / 2, 32),
        (canonical.len() - 40, 32),
    ] {
        secrets.push(("image base64", canonical[i..i + window].to_owned()));
        secrets.push((
            "image base64 (url-safe)",
            url_safe(&canonical[i..i + window]),
        ));
    }
    for (name, s) in &secrets {
        assert!(
            !output.contains(s.as_str()),
            "the {name} appears in the process output"
        );
    }
}
