//! A circuit breaker in front of the vendor, as a tower layer.
//!
//! When the vendor is failing, every call made to it costs the gateway's
//! client the whole timeout and the vendor more load; the breaker notices
//! and, for a while, fails calls at once with [`UpstreamError::CircuitOpen`]
//! without calling the service it wraps.
//!
//! # States
//! - **Closed**: calls go through; their outcomes are counted. The breaker
//!   opens when [`consecutive_failures`](BreakerSettings::consecutive_failures)
//!   calls in a row failed, or when, within the rolling
//!   [`window`](BreakerSettings::window), at least
//!   [`min_requests`](BreakerSettings::min_requests) calls were counted and
//!   the share that failed is at least
//!   [`failure_ratio`](BreakerSettings::failure_ratio).
//! - **Open** for [`open_for`](BreakerSettings::open_for): every call fails
//!   at once with `CircuitOpen { retry_after }`.
//! - **Half-open**: up to [`half_open_probes`](BreakerSettings::half_open_probes)
//!   calls at a time go through as probes, the others fail with
//!   `CircuitOpen`. A probe that succeeds closes the breaker (counts start
//!   afresh); one that fails opens it again. A probe whose future is dropped
//!   (the client went away) frees its place without deciding anything.
//!
//! A call's outcome counts only in the state it was let through in: a slow
//! call admitted before the breaker opened does not close it, nor count
//! twice. The move from open to half-open happens on the first call (or
//! [`BreakerHandle::state`]) after `open_for`, and is logged then.
//!
//! # What counts
//! | outcome | counts as |
//! |---|---|
//! | an answer with status < 500 (a 4xx such as 1016/1017 included: the vendor is working) | success |
//! | an answer with status >= 500 (returned to the caller unchanged, as `Ok`) | failure |
//! | `ConnectFailed`, `Unreachable`, `Timeout`, `BadResponse` | failure |
//! | `Auth`, `InvalidUrl`, `Tls`, `CircuitOpen` | neither: operator problems, not the vendor's health |
//!
//! One [`CircuitBreakerLayer`] is one breaker: every service it makes, and
//! their clones, share its state, so build one layer per vendor. The state
//! is behind a `std::sync::Mutex`, held for a few counter updates and never
//! across an `.await`. Time is `tokio::time::Instant`, so tests can pause
//! and advance it. Transitions are logged with `tracing` (warn when
//! opening, info otherwise), with the reason and counts, never anything of
//! a request.
//!
//! A call refused while open is refused in `call`, not `poll_ready`:
//! `poll_ready` asks the wrapped service, and an error there would tell
//! tower (a `Buffer`, say) that the service is dead for good.
//!
//! # Example
//! ```
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use livegate_upstream::{
//!     BreakerSettings, BreakerState, CircuitBreakerLayer, UpstreamError, VendorResponse,
//! };
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = CircuitBreakerLayer::new(BreakerSettings {
//!     consecutive_failures: 2,
//!     ..BreakerSettings::default()
//! });
//! // For `/readyz`: the handle sees the state every clone shares.
//! let breaker = layer.handle();
//!
//! // A vendor that cannot be reached (the real one is `VendorClient`).
//! let vendor = service_fn(|_: http::Request<Bytes>| async {
//!     Err::<VendorResponse, _>(UpstreamError::Timeout)
//! });
//! let service = ServiceBuilder::new().layer(layer).service(vendor);
//!
//! for _ in 0..2 {
//!     let err = service.clone().oneshot(http::Request::new(Bytes::new())).await.unwrap_err();
//!     assert!(err.is_timeout());
//! }
//! assert_eq!(breaker.state().as_str(), "open");
//! let err = service.oneshot(http::Request::new(Bytes::new())).await.unwrap_err();
//! assert!(matches!(err, UpstreamError::CircuitOpen { retry_after } if retry_after == Duration::from_secs(10)));
//! assert!(matches!(breaker.state(), BreakerState::Open { .. }));
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::{UpstreamError, VendorResponse};

/// When the breaker opens, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// Open after this many failures in a row. `0` turns this trigger off.
    pub consecutive_failures: u32,
    /// The rolling window of the failure ratio (kept in ten buckets, so a
    /// call leaves it between 0.9 and 1.0 × `window` after it was counted).
    pub window: Duration,
    /// The failure ratio is only looked at once the window holds at least
    /// this many calls that counted.
    pub min_requests: u32,
    /// Open when failures / calls in the window reaches this (0.0–1.0; above
    /// 1.0 or NaN turns this trigger off).
    pub failure_ratio: f64,
    /// How long the breaker stays open before letting probes through.
    pub open_for: Duration,
    /// Calls let through at a time while half-open (at least 1).
    pub half_open_probes: u32,
}

impl Default for BreakerSettings {
    /// 5 in a row, or ≥ 50% of ≥ 20 calls in 10 s; open for 10 s; 1 probe.
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            window: Duration::from_secs(10),
            min_requests: 20,
            failure_ratio: 0.5,
            open_for: Duration::from_secs(10),
            half_open_probes: 1,
        }
    }
}

/// The breaker's state, as [`BreakerHandle::state`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail at once; probes are let through after `retry_after`
    /// (rounded up to whole seconds, at least one, as in
    /// [`UpstreamError::CircuitOpen`]).
    Open { retry_after: Duration },
    /// A few probe calls go through; their outcome closes or reopens.
    HalfOpen,
}

impl BreakerState {
    /// `"closed"`, `"open"` or `"half_open"`, e.g. for `/readyz`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Wraps a vendor service in the one breaker this layer holds; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    shared: Arc<Shared>,
}

impl CircuitBreakerLayer {
    /// A new breaker, closed.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            shared: Arc::new(Shared::new(settings)),
        }
    }

    /// A handle on this breaker's state.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A read-only, cheap-to-clone view of a breaker's state.
#[derive(Debug, Clone)]
pub struct BreakerHandle {
    shared: Arc<Shared>,
}

impl BreakerHandle {
    /// The state now (an open breaker whose `open_for` has passed turns
    /// half-open here).
    pub fn state(&self) -> BreakerState {
        let now = Instant::now();
        let (state, transition) = {
            let mut machine = self.shared.lock();
            let transition = machine.expire(now);
            (machine.state(now), transition)
        };
        self.shared.log(transition);
        state
    }
}

/// The breaker around a vendor service; made by [`CircuitBreakerLayer`].
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> CircuitBreaker<S> {
    /// A handle on this breaker's state.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, Req> Service<Req> for CircuitBreaker<S>
where
    S: Service<Req, Response = VendorResponse, Error = UpstreamError>,
{
    type Response = VendorResponse;
    type Error = UpstreamError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let state = match self.shared.admit() {
            Ok(permit) => State::Called {
                future: self.inner.call(req),
                permit: Some(permit),
            },
            Err(retry_after) => State::Refused { retry_after },
        };
        ResponseFuture { state }
    }
}

pin_project! {
    /// The future of [`CircuitBreaker`]'s `Service::call`.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called {
            #[pin]
            future: F,
            // Taken when the outcome is known; dropped unused if the future
            // is, which frees a probe's place.
            permit: Option<Permit>,
        },
        Refused {
            retry_after: Duration,
        },
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<VendorResponse, UpstreamError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { future, permit } => {
                let result = ready!(future.poll(cx));
                if let Some(mut permit) = permit.take() {
                    permit.outcome = Some(Outcome::of(&result));
                }
                Poll::Ready(result)
            }
            StateProj::Refused { retry_after } => Poll::Ready(Err(UpstreamError::CircuitOpen {
                retry_after: *retry_after,
            })),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

/// What a call's result says about the vendor's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    /// Says nothing about the vendor (our key or configuration is wrong).
    Neutral,
}

impl Outcome {
    fn of(result: &Result<VendorResponse, UpstreamError>) -> Self {
        // Exhaustive on purpose: a new error variant must be placed here.
        match result {
            Ok(response) if response.status.as_u16() >= 500 => Self::Failure,
            Ok(_) => Self::Success,
            Err(
                UpstreamError::ConnectFailed(_)
                | UpstreamError::Unreachable(_)
                | UpstreamError::Timeout
                | UpstreamError::BadResponse(_),
            ) => Self::Failure,
            Err(
                UpstreamError::Auth(_)
                | UpstreamError::InvalidUrl
                | UpstreamError::Tls(_)
                | UpstreamError::CircuitOpen { .. },
            ) => Self::Neutral,
        }
    }
}

/// A call let through; reports its outcome (or none, if dropped) when
/// dropped itself.
struct Permit {
    shared: Arc<Shared>,
    generation: u64,
    probe: bool,
    outcome: Option<Outcome>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared
            .complete(self.generation, self.probe, self.outcome.take());
    }
}

#[derive(Debug)]
struct Shared {
    settings: BreakerSettings,
    machine: Mutex<Machine>,
}

impl Shared {
    fn new(mut settings: BreakerSettings) -> Self {
        settings.half_open_probes = settings.half_open_probes.max(1);
        let window = Window::new(settings.window);
        Self {
            settings,
            machine: Mutex::new(Machine {
                phase: Phase::Closed,
                generation: 0,
                consecutive: 0,
                window,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        // Nothing panics while holding it; if it ever did, the counters are
        // still usable.
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A permit to call the vendor, or the `retry_after` of a refusal.
    fn admit(self: &Arc<Self>) -> Result<Permit, Duration> {
        let now = Instant::now();
        let (admitted, transition) = {
            let mut machine = self.lock();
            let transition = machine.expire(now);
            let generation = machine.generation;
            let admitted = match &mut machine.phase {
                Phase::Closed => Ok(false),
                Phase::Open { until } => Err(retry_after(until.saturating_duration_since(now))),
                Phase::HalfOpen { probes } if *probes < self.settings.half_open_probes => {
                    *probes += 1;
                    Ok(true)
                }
                Phase::HalfOpen { .. } => Err(retry_after(Duration::ZERO)),
            };
            (admitted.map(|probe| (generation, probe)), transition)
        };
        self.log(transition);
        admitted.map(|(generation, probe)| Permit {
            shared: Arc::clone(self),
            generation,
            probe,
            outcome: None,
        })
    }

    fn complete(&self, generation: u64, probe: bool, outcome: Option<Outcome>) {
        let now = Instant::now();
        let transition = {
            let mut machine = self.lock();
            if machine.generation != generation {
                // Let through in an earlier state: says nothing about this one.
                return;
            }
            machine.complete(now, probe, outcome, &self.settings)
        };
        self.log(transition);
    }

    fn log(&self, transition: Option<Transition>) {
        let Some(transition) = transition else { return };
        let open_for = self.settings.open_for;
        match transition {
            Transition::Opened(Reason::ConsecutiveFailures { failures }) => tracing::warn!(
                reason = "consecutive failures",
                failures,
                ?open_for,
                "vendor circuit breaker opened"
            ),
            Transition::Opened(Reason::FailureRatio { failures, calls }) => tracing::warn!(
                reason = "failure ratio",
                failures,
                calls,
                window = ?self.settings.window,
                ?open_for,
                "vendor circuit breaker opened"
            ),
            Transition::Opened(Reason::ProbeFailed) => tracing::warn!(
                reason = "probe failed",
                ?open_for,
                "vendor circuit breaker opened"
            ),
            Transition::HalfOpened => tracing::info!(
                probes = self.settings.half_open_probes,
                "vendor circuit breaker half-open"
            ),
            Transition::Closed => {
                tracing::info!(reason = "probe succeeded", "vendor circuit breaker closed")
            }
        }
    }
}

/// `left`, rounded up to whole seconds, at least one.
fn retry_after(left: Duration) -> Duration {
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

#[derive(Debug)]
struct Machine {
    phase: Phase,
    /// Bumped by every transition, so a call's outcome counts only in the
    /// state that let it through.
    generation: u64,
    consecutive: u32,
    window: Window,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probes: u32 },
}

#[derive(Debug, Clone, Copy)]
enum Transition {
    Opened(Reason),
    HalfOpened,
    Closed,
}

#[derive(Debug, Clone, Copy)]
enum Reason {
    ConsecutiveFailures { failures: u32 },
    FailureRatio { failures: u32, calls: u32 },
    ProbeFailed,
}

impl Machine {
    /// Open → half-open once `open_for` has passed.
    fn expire(&mut self, now: Instant) -> Option<Transition> {
        match self.phase {
            Phase::Open { until } if now >= until => {
                self.phase = Phase::HalfOpen { probes: 0 };
                self.generation += 1;
                Some(Transition::HalfOpened)
            }
            _ => None,
        }
    }

    fn state(&self, now: Instant) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } => BreakerState::Open {
                retry_after: retry_after(until.saturating_duration_since(now)),
            },
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn complete(
        &mut self,
        now: Instant,
        probe: bool,
        outcome: Option<Outcome>,
        settings: &BreakerSettings,
    ) -> Option<Transition> {
        match (&mut self.phase, outcome) {
            (Phase::HalfOpen { probes }, outcome) if probe => {
                *probes = probes.saturating_sub(1);
                match outcome {
                    Some(Outcome::Success) => Some(self.close()),
                    Some(Outcome::Failure) => Some(self.open(now, Reason::ProbeFailed, settings)),
                    Some(Outcome::Neutral) | None => None,
                }
            }
            (Phase::Closed, Some(Outcome::Success)) => {
                self.consecutive = 0;
                self.window.record(now, false);
                None
            }
            (Phase::Closed, Some(Outcome::Failure)) => {
                self.consecutive = self.consecutive.saturating_add(1);
                self.window.record(now, true);
                self.trip(now, settings)
            }
            _ => None,
        }
    }

    /// After a failure while closed: open if a trigger is reached.
    fn trip(&mut self, now: Instant, settings: &BreakerSettings) -> Option<Transition> {
        if settings.consecutive_failures > 0 && self.consecutive >= settings.consecutive_failures {
            let failures = self.consecutive;
            return Some(self.open(now, Reason::ConsecutiveFailures { failures }, settings));
        }
        let (calls, failures) = self.window.totals(now);
        let ratio = f64::from(failures) / f64::from(calls.max(1));
        if calls >= settings.min_requests.max(1) && ratio >= settings.failure_ratio {
            return Some(self.open(now, Reason::FailureRatio { failures, calls }, settings));
        }
        None
    }

    fn open(&mut self, now: Instant, reason: Reason, settings: &BreakerSettings) -> Transition {
        self.phase = Phase::Open {
            until: now + settings.open_for,
        };
        self.reset();
        Transition::Opened(reason)
    }

    fn close(&mut self) -> Transition {
        self.phase = Phase::Closed;
        self.reset();
        Transition::Closed
    }

    fn reset(&mut self) {
        self.generation += 1;
        self.consecutive = 0;
        self.window.clear();
    }
}

const BUCKETS: usize = 10;

/// Calls and failures over the last `window`, in `BUCKETS` slices of time.
#[derive(Debug)]
struct Window {
    epoch: Instant,
    width: Duration,
    buckets: [Bucket; BUCKETS],
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which slice of time (since `epoch`) the counts are for.
    slice: u64,
    calls: u32,
    failures: u32,
}

impl Window {
    fn new(window: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            width: (window / BUCKETS as u32).max(Duration::from_millis(1)),
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    fn slice(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(since / self.width.as_nanos()).unwrap_or(u64::MAX)
    }

    fn record(&mut self, now: Instant, failed: bool) {
        let slice = self.slice(now);
        let bucket = &mut self.buckets[(slice % BUCKETS as u64) as usize];
        if bucket.slice != slice {
            *bucket = Bucket {
                slice,
                ..Bucket::default()
            };
        }
        bucket.calls = bucket.calls.saturating_add(1);
        bucket.failures = bucket.failures.saturating_add(u32::from(failed));
    }

    /// (calls, failures) in the window ending now.
    fn totals(&self, now: Instant) -> (u32, u32) {
        let slice = self.slice(now);
        self.buckets
            .iter()
            .filter(|b| slice.saturating_sub(b.slice) < BUCKETS as u64)
            .fold((0u32, 0u32), |(calls, failures), b| {
                (
                    calls.saturating_add(b.calls),
                    failures.saturating_add(b.failures),
                )
            })
    }

    fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::test_vendor::{CallOnce, Reply, ScriptedVendor};

    fn layer(settings: BreakerSettings) -> (CircuitBreakerLayer, BreakerHandle) {
        let layer = CircuitBreakerLayer::new(settings);
        let handle = layer.handle();
        (layer, handle)
    }

    fn consecutive(n: u32) -> BreakerSettings {
        BreakerSettings {
            consecutive_failures: n,
            min_requests: 1000,
            open_for: Duration::from_secs(10),
            ..BreakerSettings::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_then_skips_the_vendor() {
        let vendor = ScriptedVendor::new(Reply::Timeout);
        let (layer, breaker) = layer(consecutive(3));
        let service = layer.layer(vendor.service());
        for _ in 0..2 {
            assert!(service.call_once().await.unwrap_err().is_timeout());
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(service.call_once().await.unwrap_err().is_timeout());
        assert_eq!(vendor.calls(), 3);
        assert_eq!(
            breaker.state(),
            BreakerState::Open {
                retry_after: Duration::from_secs(10)
            }
        );

        tokio::time::advance(Duration::from_millis(7_500)).await;
        vendor.set(Reply::Status(200));
        for _ in 0..5 {
            let err = service.call_once().await.unwrap_err();
            assert!(
                matches!(err, UpstreamError::CircuitOpen { retry_after } if retry_after == Duration::from_secs(3)),
                "{err}"
            );
        }
        assert_eq!(
            vendor.calls(),
            3,
            "an open breaker does not call the vendor"
        );
        assert_eq!(breaker.state().as_str(), "open");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_consecutive_count() {
        let vendor = ScriptedVendor::new(Reply::Unreachable);
        let (layer, breaker) = layer(consecutive(3));
        let service = layer.layer(vendor.service());
        for _ in 0..2 {
            service.call_once().await.unwrap_err();
        }
        vendor.set(Reply::Status(200));
        service.call_once().await.unwrap();
        vendor.set(Reply::Unreachable);
        for _ in 0..2 {
            service.call_once().await.unwrap_err();
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        service.call_once().await.unwrap_err();
        assert_eq!(breaker.state().as_str(), "open");
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_the_failure_ratio_within_the_window() {
        let vendor = ScriptedVendor::new(Reply::BadResponse);
        let (layer, breaker) = layer(BreakerSettings {
            consecutive_failures: 0,
            window: Duration::from_secs(10),
            min_requests: 4,
            failure_ratio: 0.5,
            ..BreakerSettings::default()
        });
        let service = layer.layer(vendor.service());
        // An old failure leaves the window: it does not count.
        service.call_once().await.unwrap_err();
        tokio::time::advance(Duration::from_secs(11)).await;
        // 1 of 4, then 2 of 4... in the window: S F S F.
        for (reply, closed_after) in [
            (Reply::Status(200), true),
            (Reply::BadResponse, true),
            (Reply::Status(200), true),
            (Reply::BadResponse, false),
        ] {
            vendor.set(reply);
            let _ = service.call_once().await;
            assert_eq!(breaker.state() == BreakerState::Closed, closed_after);
        }
        assert_eq!(breaker.state().as_str(), "open");
    }

    #[tokio::test(start_paused = true)]
    async fn under_min_requests_the_ratio_does_not_open() {
        let vendor = ScriptedVendor::new(Reply::Timeout);
        let (layer, breaker) = layer(BreakerSettings {
            consecutive_failures: 0,
            min_requests: 20,
            ..BreakerSettings::default()
        });
        let service = layer.layer(vendor.service());
        for _ in 0..19 {
            service.call_once().await.unwrap_err();
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        service.call_once().await.unwrap_err();
        assert_eq!(breaker.state().as_str(), "open");
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_one_probe_through_and_a_success_closes() {
        let vendor = ScriptedVendor::new(Reply::Timeout);
        let (layer, breaker) = layer(consecutive(1));
        let service = layer.layer(vendor.service());
        service.call_once().await.unwrap_err();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);

        // The probe hangs while a second call arrives: only one goes through.
        vendor.set(Reply::Pending);
        let probe = tokio::spawn(service.clone().oneshot(Request::new(Bytes::new())));
        tokio::task::yield_now().await;
        assert_eq!(vendor.calls(), 2);
        let err = service.call_once().await.unwrap_err();
        assert!(
            matches!(err, UpstreamError::CircuitOpen { retry_after } if retry_after == Duration::from_secs(1)),
            "{err}"
        );
        assert_eq!(vendor.calls(), 2);

        // The probe succeeds: closed, and calls go through again.
        vendor.release(Reply::Status(200));
        assert_eq!(probe.await.unwrap().unwrap().status, StatusCode::OK);
        assert_eq!(breaker.state(), BreakerState::Closed);
        service.call_once().await.unwrap();
        service.call_once().await.unwrap();
        assert_eq!(vendor.calls(), 4);
        // Counters were reset: one failure (threshold 1) opens again.
        vendor.set(Reply::Timeout);
        service.call_once().await.unwrap_err();
        assert_eq!(breaker.state().as_str(), "open");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_again_for_open_for() {
        let vendor = ScriptedVendor::new(Reply::Status(503));
        let (layer, breaker) = layer(consecutive(1));
        let service = layer.layer(vendor.service());
        // A 5xx answer is a failure, but is handed back as an answer.
        let answer = service.call_once().await.unwrap();
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(breaker.state().as_str(), "open");

        tokio::time::advance(Duration::from_secs(10)).await;
        vendor.set(Reply::ConnectFailed);
        let err = service.call_once().await.unwrap_err();
        assert!(matches!(err, UpstreamError::ConnectFailed(_)), "{err}");
        assert_eq!(
            breaker.state(),
            BreakerState::Open {
                retry_after: Duration::from_secs(10)
            }
        );
        tokio::time::advance(Duration::from_millis(9_999)).await;
        let err = service.call_once().await.unwrap_err();
        assert!(matches!(err, UpstreamError::CircuitOpen { .. }), "{err}");
        assert_eq!(vendor.calls(), 2);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(breaker.state().as_str(), "half_open");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_frees_its_place() {
        let vendor = ScriptedVendor::new(Reply::Timeout);
        let (layer, breaker) = layer(consecutive(1));
        let service = layer.layer(vendor.service());
        service.call_once().await.unwrap_err();
        tokio::time::advance(Duration::from_secs(10)).await;

        vendor.set(Reply::Pending);
        let probe = tokio::spawn(service.clone().oneshot(Request::new(Bytes::new())));
        tokio::task::yield_now().await;
        assert!(matches!(
            service.call_once().await,
            Err(UpstreamError::CircuitOpen { .. })
        ));
        probe.abort();
        assert!(probe.await.unwrap_err().is_cancelled());
        assert_eq!(breaker.state(), BreakerState::HalfOpen);

        vendor.set(Reply::Status(200));
        service.call_once().await.unwrap();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(vendor.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn vendor_4xx_answers_are_successes_and_5xx_failures() {
        let vendor = ScriptedVendor::new(Reply::Status(400));
        let (layer, breaker) = layer(consecutive(2));
        let service = layer.layer(vendor.service());
        for _ in 0..10 {
            assert_eq!(service.call_once().await.unwrap().status, 400);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        vendor.set(Reply::Status(500));
        for _ in 0..2 {
            assert_eq!(service.call_once().await.unwrap().status, 500);
        }
        assert_eq!(breaker.state().as_str(), "open");
    }

    #[tokio::test(start_paused = true)]
    async fn auth_errors_neither_open_nor_close() {
        let vendor = ScriptedVendor::new(Reply::Auth);
        let (layer, breaker) = layer(consecutive(2));
        let service = layer.layer(vendor.service());
        for _ in 0..10 {
            let err = service.call_once().await.unwrap_err();
            assert!(matches!(err, UpstreamError::Auth(401)), "{err}");
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        // Nor do they break a run of failures.
        vendor.set(Reply::Timeout);
        service.call_once().await.unwrap_err();
        vendor.set(Reply::Auth);
        service.call_once().await.unwrap_err();
        vendor.set(Reply::Timeout);
        service.call_once().await.unwrap_err();
        assert_eq!(breaker.state().as_str(), "open");
        // And an Auth probe leaves the breaker half-open.
        tokio::time::advance(Duration::from_secs(10)).await;
        vendor.set(Reply::Auth);
        service.call_once().await.unwrap_err();
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_let_through_before_opening_does_not_count_after() {
        let vendor = ScriptedVendor::new(Reply::Pending);
        let (layer, breaker) = layer(consecutive(1));
        let service = layer.layer(vendor.service());
        let slow = tokio::spawn(service.clone().oneshot(Request::new(Bytes::new())));
        tokio::task::yield_now().await;
        vendor.set(Reply::Timeout);
        service.call_once().await.unwrap_err();
        assert_eq!(breaker.state().as_str(), "open");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(breaker.state().as_str(), "half_open");
        // The slow call, admitted while closed, succeeds now: no effect.
        vendor.release(Reply::Status(200));
        slow.await.unwrap().unwrap();
        assert_eq!(breaker.state().as_str(), "half_open");
    }

    #[tokio::test(start_paused = true)]
    async fn clones_and_services_of_one_layer_share_one_breaker() {
        let vendor = ScriptedVendor::new(Reply::Timeout);
        let (layer, breaker) = layer(consecutive(2));
        let a = layer.layer(vendor.service());
        let b = layer.clone().layer(vendor.service());
        a.call_once().await.unwrap_err();
        b.call_once().await.unwrap_err();
        assert_eq!(breaker.state().as_str(), "open");
        assert_eq!(a.handle().state().as_str(), "open");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_at_least_one() {
        assert_eq!(retry_after(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            retry_after(Duration::from_millis(300)),
            Duration::from_secs(1)
        );
        assert_eq!(retry_after(Duration::from_secs(2)), Duration::from_secs(2));
        assert_eq!(
            retry_after(Duration::from_millis(2_001)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let d = BreakerSettings::default();
        assert_eq!(d.consecutive_failures, 5);
        assert_eq!(d.window, Duration::from_secs(10));
        assert_eq!(d.min_requests, 20);
        assert!((d.failure_ratio - 0.5).abs() < f64::EPSILON);
        assert_eq!(d.open_for, Duration::from_secs(10));
        assert_eq!(d.half_open_probes, 1);
    }
}
