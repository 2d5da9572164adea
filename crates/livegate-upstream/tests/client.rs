//! The vendor client against the real simulator.

mod common;

use std::time::Duration;

use common::{KEY, body, send, settings};
use http::{HeaderValue, Method, Request};
use livegate_stub::{Faults, StubConfig};
use livegate_upstream::{UpstreamError, VendorClient};
use tower::{Service, ServiceExt};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn success_reports_transaction_and_score() {
    let stub = livegate_stub::spawn(StubConfig::new(KEY).recording())
        .await
        .unwrap();
    let mut client = VendorClient::new(&settings(format!("{}/", stub.base_url()), None)).unwrap();
    assert_eq!(client.endpoint().to_string(), stub.liveness_url());
    let r = send(&client, body()).await.unwrap();
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        r.answer.transaction_id.as_deref(),
        v["transactionId"].as_str()
    );
    assert!(r.answer.transaction_id.is_some());
    assert_eq!(
        r.answer.liveness_score,
        v["result"]["liveness_score"].as_f64()
    );
    assert!(r.answer.liveness_score.is_some());
    assert_eq!(r.answer.error_code, None);
    assert!(r.elapsed > Duration::ZERO);
    let seen = stub.last_headers().unwrap();
    assert_eq!(seen["x-api-key"], KEY);
    assert_eq!(seen["content-type"], "application/json");
    assert!(
        seen["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("livegate/")
    );
    // Pooled: a second call works on the same client, through `ready().call()`.
    let second = client
        .ready()
        .await
        .unwrap()
        .call(Request::new(body()))
        .await;
    assert!(second.is_ok());
    assert_eq!(stub.calls(), 2);
}

#[tokio::test]
async fn forwarded_headers_pass_and_credentials_do_not() {
    let stub = livegate_stub::spawn(StubConfig::new(KEY).recording())
        .await
        .unwrap();
    let client = VendorClient::new(&settings(stub.base_url(), None)).unwrap();
    let req = Request::builder()
        .header("traceparent", TRACEPARENT)
        .header("x-api-key", "tenant-key")
        .header("authorization", "Bearer x")
        .header("proxy-authorization", "Basic eA==")
        .header("cookie", "session=1")
        .header("content-type", "text/plain")
        .header("user-agent", "curl/8")
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .body(body())
        .unwrap();
    let r = client.oneshot(req).await.unwrap();
    assert_eq!(r.status, 200);
    let seen = stub.last_headers().unwrap();
    assert_eq!(seen["traceparent"], TRACEPARENT);
    assert_eq!(seen.get_all("x-api-key").iter().collect::<Vec<_>>(), [KEY]);
    assert_eq!(seen["content-type"], "application/json");
    assert_ne!(seen["user-agent"], "curl/8");
    for gone in ["authorization", "proxy-authorization", "cookie", "x-hop"] {
        assert!(!seen.contains_key(gone), "{gone} reached the vendor");
    }
}

#[tokio::test]
async fn method_and_uri_of_the_request_are_ignored() {
    let stub = livegate_stub::spawn(StubConfig::new(KEY).recording())
        .await
        .unwrap();
    let client = VendorClient::new(&settings(stub.base_url(), None)).unwrap();
    let req = Request::builder()
        .method(Method::GET)
        .uri("http://elsewhere.example/v1/liveness?x=1")
        .body(body())
        .unwrap();
    let r = client.oneshot(req).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(stub.calls(), 1);
}

#[tokio::test]
async fn the_body_reaches_the_vendor_byte_identical() {
    let stub = livegate_stub::spawn(StubConfig::new(KEY).recording())
        .await
        .unwrap();
    let client = VendorClient::new(&settings(stub.base_url(), None)).unwrap();
    let sent = body();
    send(&client, sent.clone()).await.unwrap();
    assert_eq!(stub.last_body().unwrap(), sent);
}

#[tokio::test]
async fn h2c_prior_knowledge_forwards_headers_without_hop_by_hop_ones() {
    let stub = livegate_stub::spawn(StubConfig::new(KEY).recording())
        .await
        .unwrap();
    let mut s = settings(stub.base_url(), None);
    s.http2_prior_knowledge = true;
    let client = VendorClient::new(&s).unwrap();
    // Connection-specific headers have no meaning in HTTP/2 (RFC 9113
    // §8.2.2); the client drops them whatever the protocol.
    let mut req = Request::new(body());
    for (name, value) in [
        ("traceparent", TRACEPARENT),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("te", "gzip"),
    ] {
        req.headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    let r = client.oneshot(req).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(stub.last_headers().unwrap()["traceparent"], TRACEPARENT);
}

#[tokio::test]
async fn a_wrong_vendor_key_is_an_auth_error() {
    let stub = livegate_stub::spawn(StubConfig::new(KEY).recording())
        .await
        .unwrap();
    let mut s = settings(stub.base_url(), None);
    s.api_key = livegate_core::Secret::new("wrong-vendor-key");
    let err = send(&VendorClient::new(&s).unwrap(), body())
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Auth(401)), "{err}");
    assert!(!err.to_string().contains("wrong-vendor-key"), "{err}");
}

#[tokio::test]
async fn a_vendor_error_is_an_answer_with_its_code() {
    let stub = livegate_stub::spawn(StubConfig::new(KEY).recording())
        .await
        .unwrap();
    let client = VendorClient::new(&settings(stub.base_url(), None)).unwrap();
    let r = send(&client, r#"{"faceImage":"bm90IGFuIGltYWdl"}"#.into())
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.answer.error_code, Some(1017));
    assert_eq!(r.answer.transaction_id, None);
}

#[tokio::test]
async fn a_malformed_answer_is_a_bad_response() {
    let stub = livegate_stub::spawn(StubConfig {
        faults: Faults {
            malformed_rate: 1.0,
            ..Faults::default()
        },
        ..StubConfig::new(KEY).recording()
    })
    .await
    .unwrap();
    let client = VendorClient::new(&settings(stub.base_url(), None)).unwrap();
    let err = send(&client, body()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::BadResponse(_)), "{err}");
}

#[tokio::test]
async fn oversized_answer_is_a_bad_response() {
    let stub = livegate_stub::spawn(StubConfig::new(KEY).recording())
        .await
        .unwrap();
    let mut s = settings(stub.base_url(), None);
    s.max_response_bytes = 16;
    let err = send(&VendorClient::new(&s).unwrap(), body())
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::BadResponse(_)), "{err}");
}

#[tokio::test]
async fn timeout_covers_the_whole_exchange() {
    let stub = livegate_stub::spawn(StubConfig {
        faults: Faults {
            timeout_rate: 1.0,
            hang: Duration::from_secs(30),
            ..Faults::default()
        },
        ..StubConfig::new(KEY).recording()
    })
    .await
    .unwrap();
    let mut s = settings(stub.base_url(), None);
    s.timeout = Duration::from_millis(200);
    let err = send(&VendorClient::new(&s).unwrap(), body())
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout), "{err}");
    assert!(err.is_timeout());
}

#[tokio::test]
async fn a_closed_port_is_a_connect_failure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = VendorClient::new(&settings(format!("http://{addr}"), None)).unwrap();
    let err = send(&client, body()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::ConnectFailed(_)), "{err}");
    assert!(!err.is_timeout());
    // The OS's reason, lowercased, without hyper_util's "client error" line.
    assert!(
        err.to_string()
            .starts_with("vendor connection failed: tcp connect error: connection refused"),
        "{err}"
    );
}

#[tokio::test]
async fn a_connection_lost_after_the_request_is_unreachable_not_a_connect_failure() {
    let stub = livegate_stub::spawn(StubConfig {
        faults: Faults {
            reset_rate: 1.0,
            ..Faults::default()
        },
        ..StubConfig::new(KEY)
    })
    .await
    .unwrap();
    let client = VendorClient::new(&settings(stub.base_url(), None)).unwrap();
    let err = send(&client, body()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Unreachable(_)), "{err}");
    assert!(!err.to_string().contains(KEY));
    assert_eq!(stub.calls(), 1);
}

#[test]
fn bad_urls_are_refused_and_the_key_is_not_in_debug() {
    assert!(VendorClient::new(&settings("ftp://x".into(), None)).is_err());
    assert!(VendorClient::new(&settings("not a url".into(), None)).is_err());
    let err = VendorClient::new(&settings("ftp://x".into(), None)).unwrap_err();
    assert!(err.is_config());
    assert!(!format!("{:?}", settings("http://x".into(), None)).contains(KEY));
}
