//! TLS to the vendor: a real rustls server (tokio-rustls) with a
//! throwaway certificate terminates TLS in front of the simulator. The
//! client must verify the certificate, and negotiate HTTP/2 by ALPN.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{KEY, body, send, settings};
use livegate_stub::StubConfig;
use livegate_upstream::{UpstreamError, VendorClient};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};

struct TlsFront {
    addr: SocketAddr,
    ca_pem: String,
    /// ALPN protocol of each accepted connection.
    alpn: Arc<Mutex<Vec<Option<Vec<u8>>>>>,
}

/// TLS on an ephemeral port for "localhost", forwarding plaintext to `backend`.
async fn tls_front(backend: SocketAddr) -> TlsFront {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let ca_pem = cert.cert.pem();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let alpn = Arc::new(Mutex::new(Vec::new()));
    let seen = alpn.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate aborts the handshake.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                seen.lock()
                    .unwrap()
                    .push(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec));
                let mut plain = TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    TlsFront { addr, ca_pem, alpn }
}

/// The certificate is for "localhost", so the URL names it, not the IP.
fn https(addr: SocketAddr) -> String {
    format!("https://localhost:{}", addr.port())
}

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
    assert!(matches!(err, UpstreamError::Unreachable(_)), "{err}");
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
