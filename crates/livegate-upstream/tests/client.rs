//! The vendor client against the real simulator.

mod common;

use std::time::Duration;

use common::{KEY, body, settings};
use livegate_core::ErrorKind;
use livegate_stub::{Faults, StubConfig};
use livegate_upstream::{UpstreamError, VendorClient};

#[tokio::test]
async fn success_reports_transaction_and_score() {
    let stub = livegate_stub::spawn(StubConfig::new(KEY).recording())
        .await
        .unwrap();
    let client = VendorClient::new(&settings(format!("{}/", stub.base_url()), None)).unwrap();
    let r = client.call(body()).await.unwrap();
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(r.transaction_id.as_deref(), v["transactionId"].as_str());
    assert_eq!(r.liveness_score, v["result"]["liveness_score"].as_f64());
    assert_eq!(stub.last_headers().unwrap()["x-api-key"], KEY);
    // Pooled: a second call works on the same client.
    assert!(client.call(body()).await.is_ok());
    assert_eq!(stub.calls(), 2);
}

#[tokio::test]
async fn oversized_answer_is_a_bad_response() {
    let stub = livegate_stub::spawn(StubConfig::new(KEY).recording())
        .await
        .unwrap();
    let mut s = settings(stub.base_url(), None);
    s.max_response_bytes = 16;
    let err = VendorClient::new(&s)
        .unwrap()
        .call(body())
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::BadResponse(_)), "{err}");
    assert_eq!(err.kind(), ErrorKind::VendorBadResponse);
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
    let err = VendorClient::new(&s)
        .unwrap()
        .call(body())
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout), "{err}");
    assert_eq!(err.kind(), ErrorKind::VendorTimeout);
}

#[test]
fn bad_urls_are_refused_and_the_key_is_not_in_debug() {
    assert!(VendorClient::new(&settings("ftp://x".into(), None)).is_err());
    assert!(VendorClient::new(&settings("not a url".into(), None)).is_err());
    assert!(!format!("{:?}", settings("http://x".into(), None)).contains(KEY));
}
