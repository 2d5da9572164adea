//! TLS on the public listener, for deployments without a TLS-terminating
//! ingress: certificate chain and private key come from PEM files, and the
//! pair is replaced at run time when the files change (cert-manager, certbot,
//! a rotated Kubernetes secret) — no restart, no dropped connections.
//!
//! [`ReloadingTls`] owns one `rustls::ServerConfig` whose certificate
//! resolver hands out whatever pair is current. Replacing the pair is safe
//! for open connections: a handshake takes its own reference to the current
//! certificate, and an established session never looks at it again, so a
//! reload only changes what the *next* handshake presents. A reload that
//! fails (unreadable file, bad PEM, a key that does not match the
//! certificate — e.g. the cert rewritten but the key not yet) keeps the old
//! pair in use; the watcher retries on its next tick.
//!
//! Changes are detected by content, not modification time: both files are
//! small, and a rewrite within the same mtime tick with the same length
//! (same-size keys usually give same-size certificates) would otherwise be
//! missed. The fingerprint is a non-cryptographic 64-bit hash; it only has
//! to notice accidental changes. Errors name the file and the problem, never
//! its contents.
//!
//! This module does not own the accept loop, client certificates or OCSP.
//!
//! ```no_run
//! use std::time::Duration;
//! use livegate::tls::{ReloadingTls, TlsFiles};
//!
//! # async fn run(listener: tokio::net::TcpListener) -> anyhow::Result<()> {
//! let tls = ReloadingTls::load(TlsFiles {
//!     cert: "/etc/livegate/tls.crt".into(),
//!     key: "/etc/livegate/tls.key".into(),
//! })?;
//! // Dropping a JoinHandle detaches the task; abort it to stop watching.
//! let watcher = tls.watch(Duration::from_secs(10));
//! let acceptor = tls.acceptor();
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     let acceptor = acceptor.clone();
//!     tokio::spawn(async move {
//!         if let Ok(stream) = acceptor.accept(tcp).await {
//!             // serve HTTP on `stream`
//! #           drop(stream);
//!         }
//!     });
//! #   break;
//! }
//! # watcher.abort();
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Certificate chain and private key files (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A rustls server configuration whose certificate can be replaced at run time.
#[derive(Clone)]
pub struct ReloadingTls {
    inner: Arc<Inner>,
    config: Arc<ServerConfig>,
}

/// Everything a reload needs, and the certificate resolver itself: the
/// `ServerConfig` holds it, so it lives as long as any acceptor does.
struct Inner {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// Fingerprint of the file contents now in use. The lock also serialises
    /// reloads, so a manual `reload` and the watcher cannot interleave.
    loaded: Mutex<u64>,
}

impl ReloadingTls {
    /// Reads and checks both files now (a bad or missing file is an error that names the file, never prints key material).
    pub fn load(files: TlsFiles) -> anyhow::Result<Self> {
        let pem = Pem::read(&files)?;
        let key = pem.parse(&files)?;
        let inner = Arc::new(Inner {
            current: RwLock::new(Arc::new(key)),
            loaded: Mutex::new(pem.fingerprint()),
            files,
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("tls: the ring provider supports no safe protocol version")?
            .with_no_client_auth()
            .with_cert_resolver(inner.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            inner,
            config: Arc::new(config),
        })
    }

    /// The acceptor for new connections; every handshake uses the certificate current at that moment.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    /// Re-reads the files if they changed (by content hash); Ok(true) when a new certificate is now in use.
    /// A file that fails to parse keeps the old certificate in use and returns the error.
    pub fn reload(&self) -> anyhow::Result<bool> {
        self.inner.reload()
    }

    /// Spawns a tokio task that calls `reload` every `every` (logging a change at info and a failure at warn, once per distinct failure).
    ///
    /// The task stops when aborted, or once nothing can use a new
    /// certificate any more (every `ReloadingTls` and acceptor dropped).
    /// Dropping the handle alone detaches the task; it does not stop it.
    /// `every` is at least one millisecond. Must be called within a tokio runtime.
    pub fn watch(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let every = every.max(Duration::from_millis(1));
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(watch(inner, every))
    }

    #[cfg(test)]
    fn current(&self) -> Arc<CertifiedKey> {
        self.inner.current()
    }
}

impl fmt::Debug for ReloadingTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingTls")
            .field("files", &self.inner.files)
            .finish_non_exhaustive()
    }
}

async fn watch(inner: Weak<Inner>, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reports = Reports::default();
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let cert = inner.files.cert.clone();
        // File reads block; keep them off the runtime's worker threads.
        let outcome = match tokio::task::spawn_blocking(move || inner.reload()).await {
            Ok(outcome) => outcome,
            Err(join) => Err(anyhow!("tls reload task failed: {join}")),
        };
        match reports.next(outcome) {
            Some(Report::Changed) => {
                tracing::info!(cert = %cert.display(), "tls certificate reloaded");
            }
            Some(Report::Recovered) => {
                tracing::info!(cert = %cert.display(), "tls files valid again; certificate unchanged");
            }
            Some(Report::Failed(error)) => {
                tracing::warn!(%error, "tls reload failed; keeping the current certificate");
            }
            None => {}
        }
    }
}

/// What the watcher logs: every change, and a failure only when it differs
/// from the previous one, so a broken file warns once, not every tick.
#[derive(Default)]
struct Reports {
    last_failure: Option<String>,
}

#[derive(Debug, PartialEq)]
enum Report {
    Changed,
    /// The files parse again but hold the certificate already in use.
    Recovered,
    Failed(String),
}

impl Reports {
    fn next(&mut self, outcome: anyhow::Result<bool>) -> Option<Report> {
        match outcome {
            Ok(true) => {
                self.last_failure = None;
                Some(Report::Changed)
            }
            Ok(false) => self.last_failure.take().map(|_| Report::Recovered),
            Err(e) => {
                let failure = format!("{e:#}");
                if self.last_failure.as_deref() == Some(failure.as_str()) {
                    return None;
                }
                self.last_failure = Some(failure.clone());
                Some(Report::Failed(failure))
            }
        }
    }
}

impl Inner {
    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn reload(&self) -> anyhow::Result<bool> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        let pem = Pem::read(&self.files)?;
        let fingerprint = pem.fingerprint();
        if fingerprint == *loaded {
            return Ok(false);
        }
        let key = pem.parse(&self.files)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        *loaded = fingerprint;
        Ok(true)
    }
}

impl ResolvesServerCert for Inner {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentCert")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// The raw contents of both files, read once so that what is fingerprinted
/// is exactly what is parsed.
struct Pem {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Pem {
    fn read(files: &TlsFiles) -> anyhow::Result<Self> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path).with_context(|| format!("tls {what} file {}", path.display()))
        };
        Ok(Self {
            cert: read("certificate", &files.cert)?,
            key: read("key", &files.key)?,
        })
    }

    fn fingerprint(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        self.cert.hash(&mut h);
        self.key.hash(&mut h);
        h.finish()
    }

    fn parse(&self, files: &TlsFiles) -> anyhow::Result<CertifiedKey> {
        let cert_file = files.cert.display();
        let key_file = files.key.display();
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("tls certificate file {cert_file}: {}", pem_problem(&e)))?;
        if chain.is_empty() {
            bail!("tls certificate file {cert_file}: no CERTIFICATE section found");
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| match e {
            pem::Error::NoItemsFound => {
                anyhow!("tls key file {key_file}: no PRIVATE KEY section found")
            }
            e => anyhow!("tls key file {key_file}: {}", pem_problem(&e)),
        })?;
        let key = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| anyhow!("tls key file {key_file}: {e}"))?;
        let certified = CertifiedKey::new(chain, key);
        match certified.keys_match() {
            // ring keys always know their public key; `Unknown` cannot be checked.
            Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                bail!("tls key file {key_file} does not match the certificate in {cert_file}")
            }
            Err(e) => bail!("tls certificate file {cert_file}: {e}"),
        }
        Ok(certified)
    }
}

/// A PEM error without the file's bytes: some variants carry a line of it.
fn pem_problem(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line",
        pem::Error::IllegalSectionStart { .. } => "malformed PEM BEGIN line",
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64",
        pem::Error::NoItemsFound => "no PEM section found",
        pem::Error::SectionTooLarge => "a PEM section is too large",
        _ => "not valid PEM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::client::TlsStream;

    /// A throwaway self-signed pair for "localhost".
    struct Pair {
        cert_pem: String,
        key_pem: String,
        der: CertificateDer<'static>,
    }

    fn pair() -> Pair {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        Pair {
            cert_pem: c.cert.pem(),
            key_pem: c.signing_key.serialize_pem(),
            der: c.cert.der().clone(),
        }
    }

    fn write(files: &TlsFiles, p: &Pair) {
        std::fs::write(&files.cert, &p.cert_pem).unwrap();
        std::fs::write(&files.key, &p.key_pem).unwrap();
    }

    fn files_in(dir: &tempfile::TempDir) -> TlsFiles {
        TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        }
    }

    /// Accepts TLS connections with one acceptor taken up front (as the
    /// server will) and echoes every read back.
    async fn echo_server(tls: &ReloadingTls) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls.acceptor();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Connects trusting only `trusted`, offering h2 then http/1.1.
    async fn connect(addr: std::net::SocketAddr, trusted: &Pair) -> TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(trusted.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(addr).await.unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    fn peer_cert(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
        s.get_ref().1.peer_certificates().unwrap()[0].clone()
    }

    async fn ping(s: &mut TlsStream<TcpStream>, msg: &[u8]) {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
    }

    #[tokio::test]
    async fn serves_reloads_and_keeps_open_connections() {
        let dir = tempfile::tempdir().unwrap();
        let files = files_in(&dir);
        let (a, b) = (pair(), pair());
        write(&files, &a);
        let tls = ReloadingTls::load(files.clone()).unwrap();
        let addr = echo_server(&tls).await;

        // 1. The first certificate, h2 by ALPN, bytes both ways.
        let mut first = connect(addr, &a).await;
        assert_eq!(peer_cert(&first), a.der);
        assert_eq!(first.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        ping(&mut first, b"before").await;

        // 2. New files: new connections see B, the open one keeps working.
        write(&files, &b);
        assert!(tls.reload().unwrap());
        let mut second = connect(addr, &b).await;
        assert_eq!(peer_cert(&second), b.der);
        ping(&mut second, b"new").await;
        ping(&mut first, b"after reload").await;

        // 3. Unchanged files are not a change; a broken key keeps B.
        assert!(!tls.reload().unwrap());
        std::fs::write(
            &files.key,
            "-----BEGIN PRIVATE KEY-----\nSECRET%%GARBAGE\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = format!("{:#}", tls.reload().unwrap_err());
        assert!(err.contains(&files.key.display().to_string()), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
        assert_eq!(peer_cert(&connect(addr, &b).await), b.der);

        // A half-written rotation (new cert, old key) is refused the same way.
        let c = pair();
        std::fs::write(&files.cert, &c.cert_pem).unwrap();
        std::fs::write(&files.key, &b.key_pem).unwrap();
        let err = format!("{:#}", tls.reload().unwrap_err());
        assert!(err.contains("does not match"), "{err}");
        assert_eq!(peer_cert(&connect(addr, &b).await), b.der);
        ping(&mut first, b"still").await;
    }

    #[test]
    fn load_errors_name_the_file_and_never_show_pem() {
        let dir = tempfile::tempdir().unwrap();
        let files = files_in(&dir);
        let (a, b) = (pair(), pair());
        let load_err = |f: &TlsFiles| format!("{:#}", ReloadingTls::load(f.clone()).unwrap_err());
        let mut errors = Vec::new();

        // The key file is missing.
        std::fs::write(&files.cert, &a.cert_pem).unwrap();
        let err = load_err(&files);
        assert!(
            err.contains(&format!("tls key file {}", files.key.display())),
            "{err}"
        );
        errors.push(err);

        // The key belongs to another certificate.
        std::fs::write(&files.key, &b.key_pem).unwrap();
        let err = load_err(&files);
        assert!(err.contains("does not match"), "{err}");
        assert!(err.contains(&files.key.display().to_string()), "{err}");
        errors.push(err);

        // Cert and key swapped: the "certificate" file holds no certificate.
        let swapped = TlsFiles {
            cert: files.key.clone(),
            key: files.cert.clone(),
        };
        let err = load_err(&swapped);
        assert!(
            err.contains(&format!("tls certificate file {}", files.key.display())),
            "{err}"
        );
        assert!(err.contains("no CERTIFICATE section"), "{err}");
        errors.push(err);

        // A truncated certificate.
        std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nSECRET!!\n").unwrap();
        let err = load_err(&files);
        assert!(
            err.contains(&format!("tls certificate file {}", files.cert.display())),
            "{err}"
        );
        errors.push(err);

        for err in errors {
            assert!(!err.contains("-----") && !err.contains("SECRET"), "{err}");
        }
    }

    #[tokio::test]
    async fn watch_picks_up_a_change_and_stops_when_unused() {
        let dir = tempfile::tempdir().unwrap();
        let files = files_in(&dir);
        let (a, b) = (pair(), pair());
        write(&files, &a);
        let tls = ReloadingTls::load(files.clone()).unwrap();
        let watcher = tls.watch(Duration::from_millis(50));

        write(&files, &b);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while tls.current().cert[0] != b.der {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reload within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        drop(tls);
        tokio::time::timeout(Duration::from_secs(1), watcher)
            .await
            .expect("the watcher outlived its configuration")
            .unwrap();
    }

    #[test]
    fn the_watcher_reports_each_failure_once() {
        let mut r = Reports::default();
        let failed = |m: &str| Some(Report::Failed(m.to_owned()));
        assert_eq!(r.next(Ok(false)), None);
        assert_eq!(r.next(Err(anyhow!("bad key"))), failed("bad key"));
        assert_eq!(r.next(Err(anyhow!("bad key"))), None);
        assert_eq!(r.next(Err(anyhow!("mismatch"))), failed("mismatch"));
        assert_eq!(r.next(Ok(false)), Some(Report::Recovered));
        assert_eq!(r.next(Ok(false)), None);
        assert_eq!(r.next(Err(anyhow!("bad key"))), failed("bad key"));
        assert_eq!(r.next(Ok(true)), Some(Report::Changed));
        assert_eq!(r.next(Ok(true)), Some(Report::Changed));
        assert_eq!(r.next(Err(anyhow!("bad key"))), failed("bad key"));
    }
}
