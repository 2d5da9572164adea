//! Accept loop, routing, fault injection and the test handle.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rand::RngExt;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::vendor::{self, KeyCheck, VendorError};
use crate::{BODY_LIMIT, Faults, StubConfig};

const LIVENESS_PATH: &str = "/modules/liveness";

/// Why a request ends without any response. Returning an error from a hyper
/// service is how a connection gets dropped mid-request.
#[derive(Debug, thiserror::Error)]
enum Abort {
    #[error("simulated connection reset")]
    SimulatedReset,
    #[error("simulated hang abandoned at shutdown")]
    HangAbandoned,
    #[error("request body could not be read")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// State shared by every connection of one server.
struct Shared {
    key: KeyCheck,
    latency: Duration,
    jitter: Duration,
    // Behind a lock so a test can switch faults on and off on a running
    // simulator (a circuit breaker test needs the vendor to recover).
    faults: RwLock<Faults>,
    calls: AtomicU64,
    record: bool,
    last_headers: Mutex<Option<HeaderMap>>,
    last_body: Mutex<Option<Bytes>>,
    shutting_down: watch::Sender<bool>,
}

impl Shared {
    fn new(config: StubConfig) -> Self {
        Self {
            key: KeyCheck::new(&config.api_key),
            latency: config.latency,
            jitter: config.jitter,
            faults: RwLock::new(config.faults),
            calls: AtomicU64::new(0),
            record: config.record,
            last_headers: Mutex::new(None),
            last_body: Mutex::new(None),
            shutting_down: watch::Sender::new(false),
        }
    }

    fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn delay(&self) -> Duration {
        let jitter = if self.jitter.is_zero() {
            Duration::ZERO
        } else {
            let nanos = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(rand::rng().random_range(0..=nanos))
        };
        self.latency.saturating_add(jitter)
    }
}

// Poisoning only means another request panicked mid-store; the value is
// still a whole `Option`, so keep serving rather than cascade the panic.
fn store<T>(slot: &Mutex<Option<T>>, value: Option<T>) {
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = value;
}

fn load<T: Clone>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Serves the simulator on `listener` until `shutdown` resolves.
///
/// Speaks HTTP/1.1 and h2c (prior knowledge) on the same port. Shutdown is
/// graceful: the listener closes at once, requests in flight finish (their
/// configured latency included), idle keep-alive connections close; only a
/// timeout fault's hang is cut short, by closing its connection.
///
/// Accept errors (such as running out of file descriptors) are logged and
/// retried, so this returns `Ok` once shut down.
pub async fn serve(
    listener: TcpListener,
    config: StubConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    run(listener, Arc::new(Shared::new(config)), shutdown).await
}

async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::warn!(%error, "vendor simulator: accept failed");
                    // Back off so a persistent error (EMFILE) does not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = Arc::clone(&shared);
        let service = service_fn(move |req| route(Arc::clone(&shared), req));
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                // Expected for simulated resets and abandoned hangs.
                tracing::debug!(%peer, %error, "vendor simulator: connection ended with an error");
            }
        });
    }
    drop(listener);
    shared.shutting_down.send_replace(true);
    graceful.shutdown().await;
    Ok(())
}

async fn route(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Abort> {
    let response = match req.uri().path() {
        LIVENESS_PATH if req.method() == Method::POST => return liveness(&shared, req).await,
        LIVENESS_PATH => method_not_allowed("POST"),
        "/livez" if matches!(*req.method(), Method::GET | Method::HEAD) => {
            json(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
        }
        "/livez" => method_not_allowed("GET, HEAD"),
        _ => json(
            StatusCode::NOT_FOUND,
            br#"{"message":"not found"}"#.to_vec(),
        ),
    };
    Ok(response)
}

async fn liveness(shared: &Shared, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Abort> {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    if shared.record {
        store(&shared.last_headers, Some(req.headers().clone()));
        // Cleared first so a body that never arrives is not mistaken for
        // the previous request's.
        store(&shared.last_body, None);
    }
    let key_ok = shared.key.accepts(req.headers().get("x-api-key"));

    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > BODY_LIMIT as u64) {
        return Ok(finish(too_large()));
    }
    let body = match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => return Ok(finish(too_large())),
        Err(error) => return Err(Abort::Body(error)),
    };
    if shared.record {
        store(&shared.last_body, Some(body.clone()));
    }

    tokio::time::sleep(shared.delay()).await;

    let faults = shared.faults();
    if vendor::roll(faults.reset_rate) {
        tracing::debug!("vendor simulator: injected reset");
        return Err(Abort::SimulatedReset);
    }
    if vendor::roll(faults.timeout_rate) {
        tracing::debug!(hang = ?faults.hang, "vendor simulator: injected hang");
        let mut shutting_down = shared.shutting_down.subscribe();
        tokio::select! {
            () = tokio::time::sleep(faults.hang) => {}
            // `wait_for` sees a shutdown that began before this hang did.
            _ = shutting_down.wait_for(|down| *down) => return Err(Abort::HangAbandoned),
        }
    }
    if vendor::roll(faults.server_error_rate) {
        return Ok(finish(json(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"message":"service unavailable"}"#.to_vec(),
        )));
    }
    if vendor::roll(faults.malformed_rate) {
        // Valid-looking start, cut mid-value: fails any JSON parser while
        // still passing a content-type or status check.
        return Ok(finish(json(
            StatusCode::OK,
            br#"{"apiType":"id_live_face","result":{"liveness_sco"#.to_vec(),
        )));
    }

    if !key_ok {
        return Ok(finish(vendor_error(VendorError::InvalidKey)));
    }
    let image = match vendor::analyze(&body) {
        Ok(image) => image,
        Err(error) => return Ok(finish(vendor_error(error))),
    };
    if vendor::roll(faults.error_rate) {
        return Ok(finish(vendor_error(VendorError::AnalyzeFailed)));
    }
    let transaction_id = vendor::transaction_id();
    let score = vendor::liveness_score(&image);
    tracing::debug!(%transaction_id, score, "vendor simulator: scored");
    Ok(finish(json(
        StatusCode::OK,
        vendor::success_body(score, &transaction_id),
    )))
}

fn finish(response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    tracing::debug!(
        status = response.status().as_u16(),
        "vendor simulator: liveness answered"
    );
    response
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn vendor_error(error: VendorError) -> Response<Full<Bytes>> {
    json(error.status(), error.body())
}

fn too_large() -> Response<Full<Bytes>> {
    json(
        StatusCode::PAYLOAD_TOO_LARGE,
        br#"{"message":"request body too large"}"#.to_vec(),
    )
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = json(
        StatusCode::METHOD_NOT_ALLOWED,
        br#"{"message":"method not allowed"}"#.to_vec(),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// Binds `127.0.0.1:0` and serves the simulator on the current runtime.
///
/// Dropping the returned handle starts a graceful shutdown without waiting
/// for it; [`StubHandle::shutdown`] waits.
pub async fn spawn(config: StubConfig) -> io::Result<StubHandle> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(config));
    let (stop, stopped) = oneshot::channel::<Infallible>();
    // The receiver resolves (with an error) when the sender is dropped, which
    // is what makes dropping the handle a shutdown.
    let task = tokio::spawn(run(listener, Arc::clone(&shared), async move {
        let _ = stopped.await;
    }));
    Ok(StubHandle {
        addr,
        shared,
        stop,
        task,
    })
}

/// A running simulator started by [`spawn`], with what it has seen.
pub struct StubHandle {
    /// Where the simulator listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: oneshot::Sender<Infallible>,
    task: JoinHandle<io::Result<()>>,
}

impl std::fmt::Debug for StubHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StubHandle")
            .field("addr", &self.addr)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl StubHandle {
    /// `http://127.0.0.1:PORT`, the vendor base URL to give the gateway.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/modules/liveness`.
    pub fn liveness_url(&self) -> String {
        format!("{}{LIVENESS_PATH}", self.base_url())
    }

    /// Number of requests to the liveness route so far, whatever their
    /// outcome (401s, faults and 413s included).
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Headers of the last liveness request, as received.
    pub fn last_headers(&self) -> Option<HeaderMap> {
        load(&self.shared.last_headers)
    }

    /// Raw body of the last liveness request, as received; `None` until one
    /// has been read in full (and for a request refused with 413), and
    /// always `None` unless the simulator was started with
    /// [`StubConfig::recording`].
    pub fn last_body(&self) -> Option<Bytes> {
        load(&self.shared.last_body)
    }

    /// Replaces the faults for requests that arrive from now on.
    pub fn set_faults(&self, faults: Faults) {
        *self
            .shared
            .faults
            .write()
            .unwrap_or_else(PoisonError::into_inner) = faults;
    }

    /// Stops accepting, lets requests in flight finish, and waits for that.
    pub async fn shutdown(self) -> io::Result<()> {
        drop(self.stop);
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(io::Error::other(join)),
        }
    }
}
