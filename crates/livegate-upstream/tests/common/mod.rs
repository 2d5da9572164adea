//! Helpers shared by the vendor-client tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use livegate_upstream::{UpstreamError, VendorClient, VendorResponse, VendorSettings};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

pub const KEY: &str = "upstream-test-key";

pub fn settings(base_url: String, ca_pem: Option<Vec<u8>>) -> VendorSettings {
    VendorSettings {
        base_url,
        api_key: livegate_core::Secret::new(KEY),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        max_response_bytes: 1024 * 1024,
        http2_prior_knowledge: false,
        pool_idle_timeout: Duration::from_secs(30),
        ca_pem,
    }
}

/// The vendor's request body for a real JPEG, in the strict padded
/// standard base64 the simulator demands.
pub fn body() -> Bytes {
    let jpeg = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/face-320x240.jpg"
    ))
    .unwrap();
    Bytes::from(format!(
        r#"{{"faceImage":"{}"}}"#,
        base64_simd::STANDARD.encode_to_string(&jpeg)
    ))
}

/// One call through the `Service` impl, with no extra header.
pub async fn send(client: &VendorClient, body: Bytes) -> Result<VendorResponse, UpstreamError> {
    client.clone().oneshot(http::Request::new(body)).await
}

pub struct TlsFront {
    pub addr: SocketAddr,
    pub ca_pem: String,
    /// ALPN protocol of each completed handshake.
    pub alpn: Arc<Mutex<Vec<Option<Vec<u8>>>>>,
    /// TCP connections accepted, dropped ones included.
    pub accepted: Arc<AtomicUsize>,
}

/// TLS on an ephemeral port for "localhost", forwarding plaintext to `backend`.
pub async fn tls_front(backend: SocketAddr) -> TlsFront {
    tls_front_dropping(backend, 0).await
}

/// The same, but the first `drop_first` TCP connections are closed as soon
/// as accepted, before the TLS handshake: to the client, a connection that
/// could not be made (nothing of a request can have been sent on it).
pub async fn tls_front_dropping(backend: SocketAddr, drop_first: usize) -> TlsFront {
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
    let accepted = Arc::new(AtomicUsize::new(0));
    let (seen, count) = (alpn.clone(), accepted.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            if count.fetch_add(1, Ordering::SeqCst) < drop_first {
                drop(tcp);
                continue;
            }
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
    TlsFront {
        addr,
        ca_pem,
        alpn,
        accepted,
    }
}

/// The certificate is for "localhost", so the URL names it, not the IP.
pub fn https(addr: SocketAddr) -> String {
    format!("https://localhost:{}", addr.port())
}
