//! Black-box tests of the simulator over real sockets, with the same kind of
//! client (hyper-util) the gateway uses.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use livegate_stub::{Faults, StubConfig, StubHandle, liveness_score, spawn};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "vendor-key-for-tests";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn b64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

fn face_body(face_image: &str) -> Bytes {
    Bytes::from(serde_json::to_vec(&json!({ "faceImage": face_image })).unwrap())
}

struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

async fn send(
    client: &HttpClient,
    stub: &StubHandle,
    key: Option<&str>,
    body: Bytes,
) -> Result<Answer, hyper_util::client::legacy::Error> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(stub.liveness_url())
        .header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    let resp = client.request(req.body(Full::new(body)).unwrap()).await?;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

async fn post(stub: &StubHandle, key: Option<&str>, body: Bytes) -> Answer {
    send(&client(), stub, key, body)
        .await
        .expect("request failed")
}

/// A simulator whose every call hangs for `hang` before answering.
async fn hanging_stub(hang: Duration) -> StubHandle {
    stub_with_faults(Faults {
        timeout_rate: 1.0,
        hang,
        ..Faults::default()
    })
    .await
}

/// A good JPEG with the right key, to a simulator with these faults.
async fn post_jpeg_with(faults: Faults) -> Answer {
    let stub = stub_with_faults(faults).await;
    post(
        &stub,
        Some(KEY),
        face_body(&b64(&fixture("face-320x240.jpg"))),
    )
    .await
}

async fn get(stub: &StubHandle, path: &str) -> Answer {
    let uri = format!("{}{path}", stub.base_url());
    let resp = client()
        .request(Request::get(uri).body(Full::default()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        content_type,
        body,
    }
}

async fn stub() -> StubHandle {
    spawn(StubConfig::new(KEY).recording()).await.unwrap()
}

async fn stub_with_faults(faults: Faults) -> StubHandle {
    spawn(StubConfig {
        faults,
        ..StubConfig::new(KEY).recording()
    })
    .await
    .unwrap()
}

/// The vendor's "faceImage is required".
fn assert_1016(answer: &Answer) {
    assert_vendor_error(
        answer,
        StatusCode::BAD_REQUEST,
        1016,
        "faceImage is required",
    );
}

/// The vendor's "Fail to analyze face".
fn assert_1017(answer: &Answer) {
    assert_vendor_error(
        answer,
        StatusCode::BAD_REQUEST,
        1017,
        "Fail to analyze face",
    );
}

fn assert_vendor_error(answer: &Answer, status: StatusCode, code: u64, message: &str) {
    assert_eq!(answer.status, status, "body: {:?}", answer.body);
    assert_eq!(
        answer.json(),
        json!({ "errorCode": code, "message": message })
    );
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
}

fn assert_transaction_id(id: &str) {
    assert_eq!(id.len(), 13, "{id:?}");
    assert!(
        id.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{id:?}"
    );
}

fn assert_success(answer: &Answer, image: &[u8]) -> String {
    assert_eq!(answer.status, StatusCode::OK, "body: {:?}", answer.body);
    let v = answer.json();
    assert_eq!(v["apiType"], "id_live_face");
    let score = v["result"]["liveness_score"]
        .as_u64()
        .expect("numeric score");
    assert!(score <= 100);
    assert_eq!(score, u64::from(liveness_score(image)));
    let id = v["transactionId"].as_str().expect("string transactionId");
    assert_transaction_id(id);
    assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
    id.to_owned()
}

#[tokio::test]
async fn real_images_score_deterministically_with_fresh_transaction_ids() {
    let stub = stub().await;
    let mut ids = Vec::new();
    for name in [
        "face-320x240.jpg",
        "face-320x240.png",
        "face-320x240.webp",
        "face-320x240-lossless.webp",
        "face-320x240-alpha.webp",
        "face-640x480.jpg",
    ] {
        let image = fixture(name);
        let first = post(&stub, Some(KEY), face_body(&b64(&image))).await;
        let second = post(&stub, Some(KEY), face_body(&b64(&image))).await;
        ids.push(assert_success(&first, &image));
        ids.push(assert_success(&second, &image));
        assert_eq!(
            first.json()["result"]["liveness_score"],
            second.json()["result"]["liveness_score"],
            "{name}"
        );
    }
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "transactionIds repeat: {ids:?}");
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let stub = stub().await;
    let image = fixture("face-320x240.jpg");
    let answer = send(&h2_client(), &stub, Some(KEY), face_body(&b64(&image)))
        .await
        .unwrap();
    assert_success(&answer, &image);
}

#[tokio::test]
async fn wrong_or_missing_vendor_key_is_401() {
    let stub = stub().await;
    let body = face_body(&b64(&fixture("face-320x240.jpg")));
    for key in [
        None,
        Some(""),
        Some("tenant-key"),
        Some("vendor-key-for-test"),
        Some("vendor-key-for-testsx"),
        Some("VENDOR-KEY-FOR-TESTS"),
    ] {
        let answer = post(&stub, key, body.clone()).await;
        assert_vendor_error(&answer, StatusCode::UNAUTHORIZED, 1001, "Invalid API key");
    }
}

#[tokio::test]
async fn missing_null_or_empty_face_image_is_1016() {
    let stub = stub().await;
    for body in [
        &br#"{}"#[..],
        br#"{"faceImage":null}"#,
        br#"{"faceImage":""}"#,
        br#"{"face_image":"/9j/"}"#,
        b"",
        b"faceImage=abc",
        b"[]",
    ] {
        let answer = post(&stub, Some(KEY), Bytes::from_static(body)).await;
        assert_1016(&answer);
    }
}

#[tokio::test]
async fn lenient_base64_forms_are_1017() {
    let stub = stub().await;
    let image = fixture("face-320x240.jpg");
    let canonical = b64(&image);
    // Each variant only proves strictness if it really differs from the
    // canonical form in the way it claims to.
    assert!(canonical.contains(['+', '/']) && canonical.ends_with('='));
    let url_safe = base64_simd::URL_SAFE.encode_to_string(&image);
    let unpadded = canonical.trim_end_matches('=').to_owned();
    let wrapped = canonical
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n");
    let variants = [
        format!("data:image/jpeg;base64,{canonical}"),
        format!("image/jpeg;base64,{canonical}"),
        wrapped,
        format!("{canonical}\n"),
        format!(" {canonical}"),
        url_safe,
        unpadded,
    ];
    for variant in &variants {
        assert_ne!(variant, &canonical);
        let answer = post(&stub, Some(KEY), face_body(variant)).await;
        assert_1017(&answer);
    }
    // And the canonical form of the same image is accepted, so the 1017s
    // above are about the encoding, not the image.
    assert_success(&post(&stub, Some(KEY), face_body(&canonical)).await, &image);
}

#[tokio::test]
async fn bytes_that_are_not_a_vendor_image_are_1017() {
    let stub = stub().await;
    for name in ["not-image.pdf", "not-image.txt", "face-256x256.gif"] {
        let answer = post(&stub, Some(KEY), face_body(&b64(&fixture(name)))).await;
        assert_1017(&answer);
    }
    let answer = post(&stub, Some(KEY), Bytes::from_static(br#"{"faceImage":42}"#)).await;
    assert_1017(&answer);
}

#[tokio::test]
async fn reset_fault_closes_the_connection_without_a_response() {
    let stub = stub_with_faults(Faults {
        reset_rate: 1.0,
        ..Faults::default()
    })
    .await;
    let body = face_body(&b64(&fixture("face-320x240.jpg")));
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        send(&client(), &stub, Some(KEY), body.clone()),
    )
    .await
    .expect("a reset must not hang");
    let error = outcome.err().expect("a reset must not produce a response");
    assert!(!error.is_connect(), "the connection was made: {error:?}");
    // Over HTTP/2 the stream is reset instead.
    let outcome = send(&h2_client(), &stub, Some(KEY), body.clone()).await;
    assert!(outcome.is_err(), "h2 reset must not produce a response");
    assert_eq!(stub.calls(), 2);

    // The server itself survives and recovers when the fault is lifted.
    stub.set_faults(Faults::default());
    assert_eq!(post(&stub, Some(KEY), body).await.status, StatusCode::OK);
}

#[tokio::test]
async fn timeout_fault_hangs_past_the_client_timeout() {
    let stub = hanging_stub(Duration::from_secs(30)).await;
    let body = face_body(&b64(&fixture("face-320x240.jpg")));
    let outcome = tokio::time::timeout(
        Duration::from_millis(300),
        send(&client(), &stub, Some(KEY), body),
    )
    .await;
    assert!(outcome.is_err(), "answered within the client timeout");
    assert_eq!(stub.calls(), 1);
}

#[tokio::test]
async fn timeout_fault_answers_after_the_hang() {
    let hang = Duration::from_millis(300);
    let stub = hanging_stub(hang).await;
    let image = fixture("face-320x240.png");
    let started = Instant::now();
    let answer = post(&stub, Some(KEY), face_body(&b64(&image))).await;
    assert!(started.elapsed() >= hang, "{:?}", started.elapsed());
    assert_success(&answer, &image);
}

#[tokio::test]
async fn server_error_fault_is_503_json() {
    let answer = post_jpeg_with(Faults {
        server_error_rate: 1.0,
        ..Faults::default()
    })
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json(), json!({ "message": "service unavailable" }));
}

#[tokio::test]
async fn malformed_fault_is_200_with_a_body_that_is_not_json() {
    let answer = post_jpeg_with(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    })
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(!answer.body.is_empty());
    assert!(serde_json::from_slice::<Value>(&answer.body).is_err());
}

#[tokio::test]
async fn error_fault_fails_a_good_image_with_1017() {
    let answer = post_jpeg_with(Faults {
        error_rate: 1.0,
        ..Faults::default()
    })
    .await;
    assert_1017(&answer);
}

#[tokio::test]
async fn faults_at_rate_zero_never_fire() {
    let stub = stub_with_faults(Faults {
        hang: Duration::from_secs(30),
        ..Faults::default()
    })
    .await;
    let image = fixture("face-320x240.jpg");
    for _ in 0..20 {
        assert_success(
            &post(&stub, Some(KEY), face_body(&b64(&image))).await,
            &image,
        );
    }
}

#[tokio::test]
async fn latency_delays_every_liveness_answer() {
    let latency = Duration::from_millis(300);
    let stub = spawn(StubConfig {
        latency,
        jitter: Duration::from_millis(50),
        ..StubConfig::new(KEY).recording()
    })
    .await
    .unwrap();
    let image = fixture("face-320x240.jpg");
    for (key, status) in [
        (Some(KEY), StatusCode::OK),
        (None, StatusCode::UNAUTHORIZED),
    ] {
        let started = Instant::now();
        let answer = post(&stub, key, face_body(&b64(&image))).await;
        assert_eq!(answer.status, status);
        assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let stub = spawn(StubConfig {
        latency: Duration::from_millis(500),
        ..StubConfig::new(KEY).recording()
    })
    .await
    .unwrap();
    let addr = stub.addr;
    let image = fixture("face-320x240.jpg");
    let url = stub.liveness_url();
    let body = face_body(&b64(&image));
    let sent = Instant::now();
    let in_flight = tokio::spawn(async move {
        let req = Request::post(url)
            .header("x-api-key", KEY)
            .body(Full::new(body))
            .unwrap();
        let resp = client().request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Ok::<_, hyper_util::client::legacy::Error>((status, body))
    });
    // Shut down only once the request is inside the simulator.
    while stub.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::timeout(Duration::from_secs(10), stub.shutdown())
        .await
        .expect("shutdown must finish")
        .unwrap();
    // The answer cannot exist before the latency has passed, so a shutdown
    // that returns earlier did not wait for it.
    assert!(
        sent.elapsed() >= Duration::from_millis(500),
        "{:?}",
        sent.elapsed()
    );
    let (status, body) = in_flight.await.unwrap().expect("in-flight request dropped");
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test]
async fn shutdown_abandons_a_hang_instead_of_waiting_for_it() {
    let stub = hanging_stub(Duration::from_secs(60)).await;
    let url = stub.liveness_url();
    let hung = tokio::spawn(async move {
        let req = Request::post(url)
            .header("x-api-key", KEY)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        client().request(req).await.map(|resp| resp.status())
    });
    while stub.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::timeout(Duration::from_secs(5), stub.shutdown())
        .await
        .expect("shutdown waited for the hang")
        .unwrap();
    assert!(hung.await.unwrap().is_err(), "a hang must not answer");
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let stub = stub().await;
    let addr = stub.addr;
    drop(stub);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn serve_runs_until_its_shutdown_future_resolves() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(livegate_stub::serve(
        listener,
        StubConfig::new(KEY).recording(),
        async move {
            let _ = stopped.await;
        },
    ));
    let resp = client()
        .request(
            Request::get(format!("http://{addr}/livez"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn records_calls_headers_and_raw_body() {
    let stub = stub().await;
    assert_eq!(stub.calls(), 0);
    assert!(stub.last_headers().is_none());
    assert!(stub.last_body().is_none());

    // Deliberately non-canonical JSON: the recording must be the raw bytes.
    let encoded = b64(&fixture("face-320x240.jpg"));
    let raw = Bytes::from(format!(
        "{{ \"faceImage\" : \"{encoded}\" , \"extra\": 1 }}"
    ));
    let req = Request::post(stub.liveness_url())
        .header("x-api-key", KEY)
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .body(Full::new(raw.clone()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(stub.calls(), 1);
    let headers = stub.last_headers().unwrap();
    assert_eq!(headers["x-api-key"], KEY);
    assert!(headers.contains_key("traceparent"));
    assert!(!headers.contains_key("authorization"));
    assert_eq!(stub.last_body().unwrap(), raw);

    // A refused request is recorded too: that is how a gateway test proves
    // what reached the vendor even when the vendor said no.
    let answer = post(&stub, Some("tenant-key"), Bytes::from_static(b"{}")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stub.calls(), 2);
    assert_eq!(stub.last_headers().unwrap()["x-api-key"], "tenant-key");
    assert_eq!(stub.last_body().unwrap(), Bytes::from_static(b"{}"));

    // Other routes are not liveness calls.
    get(&stub, "/livez").await;
    get(&stub, "/nope").await;
    assert_eq!(stub.calls(), 2);
}

#[tokio::test]
async fn livez_unknown_paths_and_wrong_methods() {
    let stub = stub().await;
    let livez = get(&stub, "/livez").await;
    assert_eq!(livez.status, StatusCode::OK);

    for path in ["/", "/nope", "/modules/liveness/", "/modules/other"] {
        let answer = get(&stub, path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.content_type.as_deref(), Some("application/json"));
        answer.json();
    }

    let resp = client()
        .request(
            Request::get(stub.liveness_url())
                .header("x-api-key", KEY)
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "POST");
    assert_eq!(stub.calls(), 0);
}

/// Sends `head` then `body` on a raw socket and returns the status line.
async fn raw_exchange(stub: &StubHandle, head: String, body: &[u8]) -> String {
    let mut socket = TcpStream::connect(stub.addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the end of the head; the simulator closes afterwards.
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert!(n > 0, "closed without a response");
        response.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    text.lines().next().unwrap().to_owned()
}

#[tokio::test]
async fn oversized_declared_body_is_413_before_it_is_sent() {
    let stub = stub().await;
    let head = format!(
        "POST /modules/liveness HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\ncontent-length: {}\r\n\r\n",
        livegate_stub::BODY_LIMIT + 1
    );
    let status = raw_exchange(&stub, head, b"").await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert_eq!(stub.calls(), 1);
    assert!(stub.last_body().is_none());
}

#[tokio::test]
async fn oversized_chunked_body_is_413() {
    let stub = stub().await;
    let head = format!(
        "POST /modules/liveness HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    // One byte over the limit, in 1 MiB chunks, without the final chunk: the
    // simulator must refuse on size alone, not wait for the end.
    let chunk = vec![b'a'; 1 << 20];
    let mut body = Vec::new();
    let mut left = livegate_stub::BODY_LIMIT + 1;
    while left > 0 {
        let n = left.min(chunk.len());
        body.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        body.extend_from_slice(&chunk[..n]);
        body.extend_from_slice(b"\r\n");
        left -= n;
    }
    let status = raw_exchange(&stub, head, &body).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(stub.last_body().is_none());
}

#[tokio::test]
async fn body_at_the_limit_is_read() {
    let stub = stub().await;
    // Valid JSON of exactly BODY_LIMIT bytes with no faceImage: 1016 proves
    // it was read and parsed rather than refused for size.
    let filler = livegate_stub::BODY_LIMIT - br#"{"pad":""}"#.len();
    let body = format!(r#"{{"pad":"{}"}}"#, "a".repeat(filler));
    assert_eq!(body.len(), livegate_stub::BODY_LIMIT);
    let answer = post(&stub, Some(KEY), Bytes::from(body)).await;
    assert_1016(&answer);
}

#[tokio::test]
async fn nothing_is_kept_unless_recording_is_asked_for() {
    let stub = spawn(StubConfig::new(KEY)).await.unwrap();
    let image = fixture("face-320x240.jpg");
    let answer = post(&stub, Some(KEY), face_body(&b64(&image))).await;
    assert_success(&answer, &image);
    assert_eq!(stub.calls(), 1);
    assert!(stub.last_body().is_none());
    assert!(stub.last_headers().is_none());
}
