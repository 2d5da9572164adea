//! The connection edge: serving a bound listener until shutdown.
//!
//! The gateway's own accept loop rather than `axum::serve`, because the
//! edge is where an attacker without a key gets to spend the gateway's
//! resources:
//! - at most `max_connections` connections are open; beyond that the
//!   listener is not polled (the kernel's backlog holds new connections)
//!   until one closes;
//! - a connection must send its first byte within `header_read_timeout`
//!   of accept (a TLS handshake must finish within it too), and then its
//!   whole request head within `header_read_timeout` of that (hyper's timer,
//!   which also closes an HTTP/1.1 keep-alive connection idle that long);
//! - request heads are bounded in size (HTTP/1.1 `max_header_size`,
//!   HTTP/2 header list size) and HTTP/2 in concurrent streams;
//! - an HTTP/2 connection with no request in flight for `idle_timeout`
//!   is closed;
//! - HTTP/1.1 and HTTP/2 (prior knowledge, or ALPN over TLS) on one port;
//! - on HTTP/1.1, an answer sent before the request body was read is
//!   followed by a bounded lingering close ([`crate::linger`]), so a client
//!   still writing its body reads the answer instead of a reset.
//!
//! Shutdown for Kubernetes: when `shutdown` resolves, `/readyz` turns 503
//! while requests are still accepted and served for `shutdown_delay` (so
//! load balancers see the replica leave before connections are refused),
//! then the listener closes, open connections are asked to finish
//! (HTTP/1.1 after the current request, HTTP/2 with GOAWAY) and are given
//! `drain` to do so; whatever is left is then closed.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use livegate_config::ServerSettings;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_rustls::TlsAcceptor;

use crate::gateway::Health;
use crate::linger::{Linger, Lingering};

/// After a failed accept (out of file descriptors and the like), how long
/// the loop waits rather than spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// While only part of the HTTP/2 preface has come, how long before the
/// connection's first bytes are looked at again.
const PREFACE_PEEK_AGAIN: Duration = Duration::from_millis(5);

/// The limits of the connection edge; see the module docs.
#[derive(Debug, Clone)]
pub struct Edge {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub http2_max_concurrent_streams: u32,
    pub shutdown_delay: Duration,
    pub drain: Duration,
    /// The lingering close after an early answer (HTTP/1.1).
    pub linger: Linger,
}

impl Edge {
    pub fn from_config(s: &ServerSettings) -> Self {
        Self {
            header_read_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
            max_connections: s.max_connections,
            max_header_bytes: s.max_header_bytes,
            http2_max_concurrent_streams: s.http2_max_concurrent_streams,
            shutdown_delay: s.shutdown_delay,
            drain: s.drain_timeout,
            linger: Linger {
                timeout: s.lingering_timeout,
                bytes: s.lingering_bytes(),
            },
        }
    }
}

impl Default for Edge {
    fn default() -> Self {
        Self::from_config(&ServerSettings::default())
    }
}

/// What to serve, and how.
pub struct Serve {
    pub app: Router,
    pub health: Health,
    pub edge: Edge,
    /// TLS on the listener; the acceptor may be a reloading one.
    pub tls: Option<TlsAcceptor>,
}

/// Serves `config.app` on `listener` until `shutdown` resolves, then shuts
/// down as the module docs say, and returns.
pub async fn serve(
    listener: TcpListener,
    config: Serve,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let Serve {
        app,
        health,
        edge,
        tls,
    } = config;
    let edge = Arc::new(edge);
    let slots = Arc::new(Semaphore::new(edge.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    // Set when the signal came: accepting goes on until then.
    let mut stop_at: Option<Instant> = None;
    let never = || Instant::now() + Duration::from_secs(365 * 24 * 3600);

    loop {
        while connections.try_join_next().is_some() {}
        let stop = sleep_until(stop_at.unwrap_or_else(never));
        tokio::pin!(stop);
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.map_err(io::Error::other)?,
            () = &mut shutdown, if stop_at.is_none() => {
                stop_at = Some(begin_shutdown(&health, edge.shutdown_delay));
                continue;
            }
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little
                    // rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown, if stop_at.is_none() => {
                stop_at = Some(begin_shutdown(&health, edge.shutdown_delay));
                continue;
            }
            () = &mut stop => break,
        };
        connections.spawn(connection(
            stream,
            permit,
            app.clone(),
            edge.clone(),
            tls.clone(),
            graceful.watcher(),
        ));
    }

    drop(listener);
    tracing::info!(
        drain_ms = edge.drain.as_millis() as u64,
        "shutting down: draining in-flight requests"
    );
    match timeout(edge.drain, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained"),
        Err(_) => tracing::warn!("drain time over: closing remaining connections"),
    }
    connections.abort_all();
    Ok(())
}

/// `/readyz` turns 503 now; returns when to stop accepting.
fn begin_shutdown(health: &Health, delay: Duration) -> Instant {
    health.set_draining();
    tracing::info!(
        delay_ms = delay.as_millis() as u64,
        "shutdown: not ready; still serving until the delay is over"
    );
    Instant::now() + delay
}

/// One connection, holding its slot until it closes.
async fn connection(
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    app: Router,
    edge: Arc<Edge>,
    tls: Option<TlsAcceptor>,
    watcher: Watcher,
) {
    let _ = stream.set_nodelay(true);
    let first = edge.header_read_timeout;
    match tls {
        Some(acceptor) => {
            let Ok(Ok(stream)) = timeout(first, acceptor.accept(stream)).await else {
                return;
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_io(TokioIo::new(stream), h2, app, &edge, watcher).await;
        }
        None => {
            let Ok(Ok(h2)) = timeout(first, starts_with_h2_preface(&stream)).await else {
                return;
            };
            serve_io(TokioIo::new(stream), h2, app, &edge, watcher).await;
        }
    }
}

/// Waits for the client's first bytes and says whether they are the
/// HTTP/2 connection preface (prior knowledge) rather than HTTP/1.1.
async fn starts_with_h2_preface(stream: &TcpStream) -> io::Result<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0";
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != PREFACE[..n] {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface so far: peek again once more has come.
        sleep(PREFACE_PEEK_AGAIN).await;
    }
}

async fn serve_io<I>(io: TokioIo<I>, h2: bool, app: Router, edge: &Edge, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if h2 {
        let activity = Activity::default();
        let svc = TowerToHyperService::new(Tracked {
            inner: app,
            activity: activity.clone(),
        });
        let mut b = http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(edge.http2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(edge.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(10));
        let conn = watcher.watch(b.serve_connection(io, svc));
        tokio::pin!(conn);
        loop {
            tokio::select! {
                _ = &mut conn => return,
                () = sleep(edge.idle_timeout) => {
                    // Idle: nothing in flight and nothing started since the
                    // last look. Closing loses no request.
                    if activity.idle_since_last_look() {
                        return;
                    }
                }
            }
        }
    } else {
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(edge.header_read_timeout)
            .max_header_size(edge.max_header_bytes)
            .keep_alive(true);
        let _ = watcher
            .watch(b.serve_connection(
                io,
                TowerToHyperService::new(Lingering::new(app, edge.linger)),
            ))
            .await;
    }
}

/// Requests in flight on one HTTP/2 connection, and whether any started.
#[derive(Clone, Default)]
struct Activity(Arc<(AtomicUsize, AtomicUsize)>);

impl Activity {
    fn idle_since_last_look(&self) -> bool {
        let started = self.0.1.swap(0, Ordering::AcqRel);
        started == 0 && self.0.0.load(Ordering::Acquire) == 0
    }
}

/// Counts the requests of a connection in flight.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S> tower::Service<http::Request<Incoming>> for Tracked<S>
where
    S: tower::Service<http::Request<Incoming>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Incoming>) -> Self::Future {
        let counts = self.activity.0.clone();
        counts.0.fetch_add(1, Ordering::AcqRel);
        counts.1.fetch_add(1, Ordering::AcqRel);
        let fut = self.inner.call(req);
        Box::pin(async move {
            struct Done(Arc<(AtomicUsize, AtomicUsize)>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.0.fetch_sub(1, Ordering::AcqRel);
                }
            }
            let _done = Done(counts);
            fut.await
        })
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
