//! Retrying a vendor call, only when provably nothing was sent.
//!
//! A liveness call is billed and is not idempotent from the bill's point of
//! view: once any byte of the request may have reached the vendor, the call
//! is never made again. [`ConnectRetryLayer`] therefore retries a call
//! **at most once**, and **only** when it failed with
//! [`UpstreamError::ConnectFailed`] (no connection was made: refused, no
//! route, connect timeout, failed TLS handshake). Every other error
//! (`Unreachable`, `Timeout`, `BadResponse`, `Auth`, `CircuitOpen`, ...) and
//! every answer, 5xx included, is handed back as it is. The retry is
//! immediate (a new connection, perhaps to another of the vendor's
//! addresses), and gets the client's whole timeout again.
//!
//! Retries are limited by a budget shared by every service the layer makes
//! (tower's [`TpsBudget`]): each call deposits, each retry withdraws, so
//! over the last [`budget_window`](RetrySettings::budget_window) retries are
//! at most [`retry_ratio`](RetrySettings::retry_ratio) of the calls plus
//! [`min_retries_per_sec`](RetrySettings::min_retries_per_sec) per second.
//! A vendor that refuses every connection thus sees at most about 1.1× the
//! traffic, not 2×.
//!
//! The other safe retry lives in the client itself: hyper_util's pooled
//! client sends a request again on a fresh connection when the pooled one
//! it picked was closed by the vendor before the request was written
//! (`retry_canceled_requests`, on by default and kept on by
//! [`VendorClient`](crate::VendorClient)). Such a call never reaches this
//! layer as an error.
//!
//! Put it inside the circuit breaker: the breaker then sees one outcome per
//! call, and an open breaker's refusal is never retried.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! use bytes::Bytes;
//! use livegate_upstream::{ConnectRetryLayer, RetrySettings, UpstreamError, VendorResponse};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let attempts = Arc::new(AtomicUsize::new(0));
//! let counted = Arc::clone(&attempts);
//! // A vendor that refuses every connection (the real one is `VendorClient`).
//! let vendor = service_fn(move |_: http::Request<Bytes>| {
//!     counted.fetch_add(1, Ordering::SeqCst);
//!     async { Err::<VendorResponse, _>(UpstreamError::ConnectFailed("connection refused".into())) }
//! });
//! let service = ServiceBuilder::new()
//!     .layer(ConnectRetryLayer::new(RetrySettings::default()))
//!     .service(vendor);
//!
//! let err = service.oneshot(http::Request::new(Bytes::new())).await.unwrap_err();
//! assert!(matches!(err, UpstreamError::ConnectFailed(_)));
//! assert_eq!(attempts.load(Ordering::SeqCst), 2);
//! # }
//! ```

use std::future::{Ready, ready};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use tower::Layer;
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::{Policy, Retry};

use crate::{UpstreamError, VendorResponse};

/// The retry budget.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// How far back the budget looks (clamped to 1–60 s).
    pub budget_window: Duration,
    /// Retries allowed per second whatever the traffic: the floor that lets
    /// a quiet gateway retry at all.
    pub min_retries_per_sec: u32,
    /// Retries allowed as a share of the calls in the window (0.0–1.0).
    pub retry_ratio: f32,
}

impl Default for RetrySettings {
    /// 10% of the calls over 10 s, plus 1 per second.
    fn default() -> Self {
        Self {
            budget_window: Duration::from_secs(10),
            min_retries_per_sec: 1,
            retry_ratio: 0.1,
        }
    }
}

/// Retries calls that failed to connect, once, within a budget; see the
/// [module docs](self). Clones share the budget.
#[derive(Debug, Clone)]
pub struct ConnectRetryLayer {
    policy: ConnectRetryPolicy,
}

impl ConnectRetryLayer {
    /// A layer with a fresh budget.
    pub fn new(settings: RetrySettings) -> Self {
        let ratio = if settings.retry_ratio.is_nan() {
            0.0
        } else {
            settings.retry_ratio.clamp(0.0, 1.0)
        };
        let budget = TpsBudget::new(
            settings
                .budget_window
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
            settings.min_retries_per_sec.min(i32::MAX as u32 - 1),
            ratio,
        );
        Self {
            policy: ConnectRetryPolicy {
                budget: Arc::new(budget),
                retried: false,
            },
        }
    }
}

impl<S> Layer<S> for ConnectRetryLayer {
    type Service = ConnectRetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(self.policy.clone(), inner)
    }
}

/// The service [`ConnectRetryLayer`] makes: tower's `Retry` with
/// [`ConnectRetryPolicy`].
pub type ConnectRetry<S> = Retry<ConnectRetryPolicy, S>;

/// Retry once, on `ConnectFailed` only, if the budget allows.
#[derive(Debug, Clone)]
pub struct ConnectRetryPolicy {
    budget: Arc<TpsBudget>,
    /// Per call: the service (and so this policy) is cloned for each call.
    retried: bool,
}

impl<B: Clone> Policy<Request<B>, VendorResponse, UpstreamError> for ConnectRetryPolicy {
    type Future = Ready<()>;

    // Called once per call: after the retry, `clone_request` declines, so
    // tower hands the retry's result back without asking again.
    fn retry(
        &mut self,
        _req: &mut Request<B>,
        result: &mut Result<VendorResponse, UpstreamError>,
    ) -> Option<Self::Future> {
        self.budget.deposit();
        match result {
            Err(UpstreamError::ConnectFailed(_)) if !self.retried && self.budget.withdraw() => {
                self.retried = true;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        // A `Request<Bytes>` clone shares the body's buffer.
        (!self.retried).then(|| req.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vendor::{CallOnce, Reply, ScriptedVendor};

    fn retried(settings: RetrySettings, vendor: &ScriptedVendor) -> impl CallOnce {
        ConnectRetryLayer::new(settings).layer(vendor.service())
    }

    #[tokio::test(start_paused = true)]
    async fn connect_failed_is_retried_exactly_once() {
        let vendor = ScriptedVendor::new(Reply::ConnectFailed);
        let service = retried(RetrySettings::default(), &vendor);
        let err = service.call_once().await.unwrap_err();
        assert!(matches!(err, UpstreamError::ConnectFailed(_)), "{err}");
        assert_eq!(vendor.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_that_connects_returns_its_answer() {
        let vendor = ScriptedVendor::new(Reply::Status(200));
        vendor.queue([Reply::ConnectFailed]);
        let service = retried(RetrySettings::default(), &vendor);
        assert_eq!(service.call_once().await.unwrap().status, 200);
        assert_eq!(vendor.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_else_is_retried() {
        for reply in [
            Reply::Unreachable,
            Reply::Timeout,
            Reply::BadResponse,
            Reply::Auth,
            Reply::Status(200),
            Reply::Status(400),
            Reply::Status(503),
        ] {
            let vendor = ScriptedVendor::new(reply);
            let service = retried(RetrySettings::default(), &vendor);
            let _ = service.call_once().await;
            assert_eq!(vendor.calls(), 1, "{reply:?}");
        }
        // Not even a ConnectFailed's retry that fails otherwise.
        let vendor = ScriptedVendor::new(Reply::Unreachable);
        vendor.queue([Reply::ConnectFailed]);
        let err = retried(RetrySettings::default(), &vendor)
            .call_once()
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::Unreachable(_)), "{err}");
        assert_eq!(vendor.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exhausted_budget_does_not_retry() {
        // No floor: one retry needs ten calls' deposits.
        let settings = RetrySettings {
            min_retries_per_sec: 0,
            retry_ratio: 0.1,
            ..RetrySettings::default()
        };
        let vendor = ScriptedVendor::new(Reply::ConnectFailed);
        let service = retried(settings, &vendor);
        service.call_once().await.unwrap_err();
        assert_eq!(vendor.calls(), 1, "an empty budget");
        vendor.set(Reply::Status(200));
        for _ in 0..8 {
            service.call_once().await.unwrap();
        }
        vendor.set(Reply::ConnectFailed);
        service.call_once().await.unwrap_err();
        assert_eq!(
            vendor.calls(),
            11,
            "the tenth call's deposit pays one retry"
        );
        service.call_once().await.unwrap_err();
        assert_eq!(vendor.calls(), 12, "spent");
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_refills_with_time() {
        let settings = RetrySettings {
            budget_window: Duration::from_secs(1),
            min_retries_per_sec: 1,
            retry_ratio: 0.1,
        };
        let vendor = ScriptedVendor::new(Reply::ConnectFailed);
        let service = retried(settings, &vendor);
        service.call_once().await.unwrap_err();
        service.call_once().await.unwrap_err();
        assert_eq!(vendor.calls(), 3, "one retry per second of floor");
        tokio::time::advance(Duration::from_millis(1_100)).await;
        service.call_once().await.unwrap_err();
        assert_eq!(vendor.calls(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_the_budget() {
        let settings = RetrySettings {
            budget_window: Duration::from_secs(1),
            min_retries_per_sec: 1,
            retry_ratio: 0.0,
        };
        let vendor = ScriptedVendor::new(Reply::ConnectFailed);
        let layer = ConnectRetryLayer::new(settings);
        let a = layer.layer(vendor.service());
        let b = layer.clone().layer(vendor.service());
        a.call_once().await.unwrap_err();
        b.call_once().await.unwrap_err();
        assert_eq!(vendor.calls(), 3);
    }

    #[test]
    fn out_of_range_settings_do_not_panic() {
        let _ = ConnectRetryLayer::new(RetrySettings {
            budget_window: Duration::ZERO,
            min_retries_per_sec: u32::MAX,
            retry_ratio: f32::NAN,
        });
        let _ = ConnectRetryLayer::new(RetrySettings {
            budget_window: Duration::from_secs(3600),
            min_retries_per_sec: 0,
            retry_ratio: -1.0,
        });
    }
}
