//! TLS to the vendor: a real rustls server (tokio-rustls) with a
//! throwaway certificate terminates TLS in front of the simulator. The
//! client must verify the certificate, and negotiate HTTP/2 by ALPN.

mod common;

use common::{KEY, body, https, send, settings, tls_front};
use livegate_stub::StubConfig;
use livegate_upstream::{UpstreamError, VendorClient};

#[tokio::test]
async fn https_with_a_trusted_ca_negotiates_h2() {
    let stub = livegate_stub::spawn(StubConfig::new(KEY).recording())
        .await
        .unwrap();
    let front = tls_front(stub.addr).await;
    let client = VendorClient::new(&settings(
        https(front.addr),
        Some(front.ca_pem.clone().into_bytes()),
    ))
    .unwrap();
    let r = send(&client, body()).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.answer.transaction_id.is_some());
    assert_eq!(stub.last_headers().unwrap()["x-api-key"], KEY);
    assert_eq!(*front.alpn.lock().unwrap(), vec![Some(b"h2".to_vec())]);
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let stub = livegate_stub::spawn(StubConfig::new(KEY).recording())
        .await
        .unwrap();
    let front = tls_front(stub.addr).await;
    // Only the Mozilla roots: the throwaway certificate is not trusted.
    let client = VendorClient::new(&settings(https(front.addr), None)).unwrap();
    let err = send(&client, body()).await.unwrap_err();
    // The handshake is part of connecting: nothing of the request was sent.
    assert!(matches!(err, UpstreamError::ConnectFailed(_)), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert_eq!(
        stub.calls(),
        0,
        "nothing may reach the vendor over an unverified connection"
    );
}

#[test]
fn a_ca_file_without_certificates_is_an_error() {
    let err = VendorClient::new(&settings(
        "https://localhost".into(),
        Some(b"not pem".to_vec()),
    ))
    .err()
    .unwrap();
    assert!(matches!(err, UpstreamError::Tls(_)), "{err}");
}
