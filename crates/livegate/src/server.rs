//! Serving a bound listener with graceful shutdown.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::gateway::Health;

/// Serves `app` on `listener` until `shutdown` resolves; then stops
/// accepting, marks the replica not ready, lets in-flight requests finish
/// for up to `drain`, and returns (dropping whatever is still open).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let (fired_tx, mut fired_rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        health.set_draining();
        let _ = fired_tx.send(true);
    };
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        res = &mut server => return res,
        _ = fired_rx.wait_for(|fired| *fired) => {}
    }
    tracing::info!(
        drain_ms = drain.as_millis() as u64,
        "shutting down: draining in-flight requests"
    );
    match tokio::time::timeout(drain, server).await {
        Ok(res) => {
            tracing::info!("drained");
            res
        }
        Err(_) => {
            tracing::warn!("drain time over: closing remaining connections");
            Ok(())
        }
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
