//! The rustls client configuration.

use std::sync::Arc;

use crate::UpstreamError;

/// Mozilla's roots plus the configured extra CAs; TLS 1.2 and 1.3 with
/// certificate verification always on.
pub(crate) fn client_config(
    extra_pem: Option<&[u8]>,
) -> Result<rustls::ClientConfig, UpstreamError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| UpstreamError::Tls(format!("ca_file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| UpstreamError::Tls(format!("ca_file: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(UpstreamError::Tls(
                "ca_file holds no PEM certificate".into(),
            ));
        }
    }
    // ring explicitly: the process never depends on which rustls provider
    // another crate's features happened to switch on.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
