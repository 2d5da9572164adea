//! Admission control: a cap on concurrent liveness requests and on the
//! body bytes they hold, so a burst of large uploads cannot exhaust memory.
//!
//! A request is admitted when a request slot is free and its reservation
//! fits the in-flight body budget; otherwise it fails at once with
//! [`Overloaded`] — answered 503 with `Retry-After` — **before any of its
//! body is read**. The reservation is [`RESERVE_FACTOR`] times the declared
//! `Content-Length` (the body, and the vendor's copy of it when it has to be
//! rewritten or encoded); a body without a declared length (chunked) is
//! charged the same way as its bytes arrive, and fails with [`Overloaded`]
//! as its body error as soon as it no longer fits. Everything is released
//! when the request's response future completes or is dropped.
//!
//! **Per-tenant share.** With a tenant function ([`AdmissionLayer::tenant`])
//! a tenant may hold at most `tenant_share` of the budget while another
//! tenant is active (has a request in flight, or sent one within
//! [`ACTIVE_FOR`]); a tenant alone may use the whole budget, and a tenant
//! holding nothing may always take one request that fits the budget. So a
//! tenant that stalls its uploads degrades itself first: the others keep
//! at least `1 - tenant_share` of the budget.
//!
//! **Minimum upload rate.** With an [`UploadFloor`], a body that has not
//! arrived at `bytes_per_second` — averaged over its first `grace`, then
//! over each following `window` — fails with [`TooSlow`] (answered 408) and
//! its reservation is given back with the request. A stalled upload holds
//! its reservation for `grace` at most, and a trickle for `grace` plus one
//! `window`.
//!
//! Every refusal is counted ([`Admission::refused`]) and, the layer sitting
//! inside the exchange layer, gets its exchange record like any other error.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use livegate_core::admission::{Admission, AdmissionLayer, Overloaded};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let admission = Admission::new(16, 256 << 20);
//! let svc = ServiceBuilder::new()
//!     .layer(AdmissionLayer::new(admission.clone()))
//!     .service(service_fn(|_req: Request<_>| async {
//!         Ok::<_, Overloaded>(http::Response::new("admitted"))
//!     }));
//! let req = Request::builder()
//!     .header("content-length", (300u64 << 20).to_string())
//!     .body(http_body_util::Empty::<Bytes>::new())
//!     .unwrap();
//! assert!(svc.oneshot(req).await.is_err()); // 300 MiB does not fit in 256 MiB
//! assert_eq!(admission.refused(), 1);
//! # });
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Buf;
use http::header::CONTENT_LENGTH;
use http::{Extensions, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// Bytes reserved per byte of declared body: the body itself, and the
/// vendor's copy when it must be rewritten (a raw or multipart upload grows
/// by a third when encoded).
pub const RESERVE_FACTOR: usize = 5;
const RESERVE_DIVISOR: usize = 2;

/// When a refused client should try again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The request was not admitted (or its streamed body stopped fitting).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("gateway is at its limit of in-flight liveness requests or body bytes")]
pub struct Overloaded {
    pub retry_after: Duration,
}

/// How long a tenant counts as active after its last request: while it
/// is, other tenants are held to their share of the budget.
pub const ACTIVE_FOR: Duration = Duration::from_secs(5);

/// The body arrived slower than the minimum upload rate.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body arrived slower than the minimum upload rate")]
pub struct TooSlow;

/// The minimum upload rate; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct UploadFloor {
    pub bytes_per_second: u64,
    pub grace: Duration,
    pub window: Duration,
}

/// The shared counters; one per gateway.
#[derive(Debug)]
pub struct Admission {
    max_requests: usize,
    budget: usize,
    /// Most a tenant may hold while another is active.
    tenant_cap: usize,
    floor: Option<UploadFloor>,
    requests: AtomicUsize,
    bytes: AtomicUsize,
    refused: AtomicU64,
    tenants: Mutex<HashMap<String, TenantUse>>,
}

/// What one tenant holds, and when it last asked.
#[derive(Debug)]
struct TenantUse {
    bytes: usize,
    requests: usize,
    seen: Instant,
}

impl Admission {
    /// No per-tenant share, no upload floor.
    pub fn new(max_requests: usize, budget_bytes: usize) -> Arc<Self> {
        Self::with(max_requests, budget_bytes, 1.0, None)
    }

    /// With a tenant's share of the budget (0 < share <= 1) and, when
    /// given, a minimum upload rate.
    pub fn with(
        max_requests: usize,
        budget_bytes: usize,
        tenant_share: f64,
        floor: Option<UploadFloor>,
    ) -> Arc<Self> {
        let tenant_cap = (budget_bytes as f64 * tenant_share.clamp(0.0, 1.0)) as usize;
        Arc::new(Self {
            max_requests,
            budget: budget_bytes,
            tenant_cap,
            floor: floor.filter(|f| f.bytes_per_second > 0),
            requests: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            tenants: Mutex::new(HashMap::new()),
        })
    }

    /// Reserves `bytes` of the in-flight budget for work beyond request
    /// bodies — an image's decode for its fingerprint — until the
    /// [`WorkReservation`] drops; `None` when the budget cannot take them
    /// now. Not charged to a tenant's share (the decode slots share that
    /// work between tenants) and not a refused request.
    pub fn try_reserve_work(self: &Arc<Self>, bytes: usize) -> Option<WorkReservation> {
        self.try_reserve_total(bytes).then(|| WorkReservation {
            admission: self.clone(),
            bytes,
        })
    }

    /// Requests refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Requests and reserved bytes in flight now.
    pub fn in_flight(&self) -> (usize, usize) {
        (
            self.requests.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    fn try_take_request(&self) -> bool {
        self.requests
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_requests).then_some(n + 1)
            })
            .is_ok()
    }

    fn try_reserve_total(&self, bytes: usize) -> bool {
        bytes == 0
            || self
                .bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    n.checked_add(bytes).filter(|&t| t <= self.budget)
                })
                .is_ok()
    }

    fn tenants(&self) -> std::sync::MutexGuard<'_, HashMap<String, TenantUse>> {
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves `bytes` for `tenant` (a new request when `new_request`):
    /// within the budget and, while another tenant is active, within the
    /// tenant's share.
    fn try_reserve(&self, tenant: Option<&str>, bytes: usize, new_request: bool) -> bool {
        let Some(tenant) = tenant else {
            return self.try_reserve_total(bytes);
        };
        let now = Instant::now();
        let mut tenants = self.tenants();
        // Forget tenants that hold nothing and have been quiet long enough;
        // whether any other tenant is active.
        let mut others_active = false;
        tenants.retain(|t, u| {
            let active = u.requests > 0 || now.duration_since(u.seen) < ACTIVE_FOR;
            others_active |= active && t != tenant;
            active || t == tenant
        });
        let usage = tenants.entry(tenant.to_owned()).or_insert(TenantUse {
            bytes: 0,
            requests: 0,
            seen: now,
        });
        usage.seen = now;
        let within_share = !others_active
            || (new_request && usage.bytes == 0)
            || usage.bytes.saturating_add(bytes) <= self.tenant_cap;
        if !within_share || !self.try_reserve_total(bytes) {
            return false;
        }
        usage.bytes += bytes;
        usage.requests += usize::from(new_request);
        true
    }

    /// Gives back what a request held.
    fn release(&self, tenant: Option<&str>, bytes: usize) {
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.requests.fetch_sub(1, Ordering::AcqRel);
        if let Some(t) = tenant {
            if let Some(u) = self.tenants().get_mut(t) {
                u.bytes = u.bytes.saturating_sub(bytes);
                u.requests = u.requests.saturating_sub(1);
            }
        }
    }

    fn refuse(&self) -> Overloaded {
        self.refused.fetch_add(1, Ordering::Relaxed);
        Overloaded {
            retry_after: RETRY_AFTER,
        }
    }
}

fn reservation(body_bytes: usize) -> usize {
    body_bytes.saturating_mul(RESERVE_FACTOR) / RESERVE_DIVISOR
}

/// Budget held by work beyond a request's body; given back on drop.
#[derive(Debug)]
pub struct WorkReservation {
    admission: Arc<Admission>,
    bytes: usize,
}

impl Drop for WorkReservation {
    fn drop(&mut self) {
        self.admission.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// What one admitted request holds; given back on drop.
#[derive(Debug)]
struct Ticket {
    admission: Arc<Admission>,
    tenant: Option<Arc<str>>,
    /// Bytes reserved so far (grows for a streamed body).
    reserved: Arc<AtomicUsize>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let bytes = self.reserved.load(Ordering::Acquire);
        self.admission.release(self.tenant.as_deref(), bytes);
    }
}

/// Which tenant a request is from (from what the layers before admission
/// put in its extensions).
type TenantOf = fn(&Extensions) -> Option<Arc<str>>;

/// Applies [`AdmissionService`]; see the [module docs](self).
#[derive(Clone)]
pub struct AdmissionLayer {
    admission: Arc<Admission>,
    tenant: Option<TenantOf>,
}

impl AdmissionLayer {
    pub fn new(admission: Arc<Admission>) -> Self {
        Self {
            admission,
            tenant: None,
        }
    }

    /// Holds each tenant to its share of the budget while others are
    /// active; a request's tenant is read from its `P` extension (see
    /// [`crate::tenant`]); a request without one is held to the whole
    /// budget only.
    pub fn per_tenant<P: crate::Tenanted>(mut self) -> Self {
        self.tenant = Some(crate::tenant::tenant_of::<P>);
        self
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService {
            inner,
            admission: self.admission.clone(),
            tenant: self.tenant,
        }
    }
}

/// See the [module docs](self).
#[derive(Clone)]
pub struct AdmissionService<S> {
    inner: S,
    admission: Arc<Admission>,
    tenant: Option<TenantOf>,
}

impl<S, B, RB> Service<Request<B>> for AdmissionService<S>
where
    S: Service<Request<CountedBody<B>>, Response = Response<RB>>,
    S::Error: From<Overloaded>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let a = &self.admission;
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let tenant: Option<Arc<str>> = self.tenant.and_then(|f| f(req.extensions()));
        if !a.try_take_request() {
            return ResponseFuture::refused(a.refuse().into());
        }
        let reserve = declared.map_or(0, reservation);
        if !a.try_reserve(tenant.as_deref(), reserve, true) {
            a.requests.fetch_sub(1, Ordering::AcqRel);
            return ResponseFuture::refused(a.refuse().into());
        }
        let ticket = Ticket {
            admission: a.clone(),
            tenant: tenant.clone(),
            reserved: Arc::new(AtomicUsize::new(reserve)),
        };
        let counted = declared.is_none().then(|| Counted {
            admission: a.clone(),
            tenant,
            reserved: ticket.reserved.clone(),
        });
        let pace = a.floor.map(Pace::new);
        let req = req.map(|body| CountedBody {
            body,
            counted,
            pace,
        });
        ResponseFuture {
            state: State::Admitted {
                fut: self.inner.call(req),
                ticket: Some(ticket),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`AdmissionService`]; holds the reservation.
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        Refused { error: Option<E> },
        Admitted { #[pin] fut: F, ticket: Option<Ticket> },
    }
}

impl<F, E> ResponseFuture<F, E> {
    fn refused(error: E) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
        }
    }
}

impl<F, R, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<R, E>>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
            StateProj::Admitted { fut, ticket } => {
                let out = ready!(fut.poll(cx));
                // The request's buffers are gone with its future's output.
                ticket.take();
                Poll::Ready(out)
            }
        }
    }
}

/// Where a body without a declared length is charged as it arrives.
struct Counted {
    admission: Arc<Admission>,
    tenant: Option<Arc<str>>,
    reserved: Arc<AtomicUsize>,
}

/// The minimum upload rate's bookkeeping for one body.
struct Pace {
    floor: UploadFloor,
    /// Armed at the first poll of the body (after a `100 Continue`, when
    /// the client asked for one).
    timer: Option<Pin<Box<Sleep>>>,
    /// Start of the period being measured, and bytes since.
    since: Instant,
    bytes: u64,
}

impl Pace {
    fn new(floor: UploadFloor) -> Self {
        Self {
            floor,
            timer: None,
            since: Instant::now(),
            bytes: 0,
        }
    }

    /// Starts the grace period, at the first poll of the body.
    fn arm(&mut self) {
        if self.timer.is_none() {
            self.since = Instant::now();
            self.timer = Some(Box::pin(tokio::time::sleep(self.floor.grace)));
        }
    }

    /// Ready with [`TooSlow`] when the period is over and the body fell
    /// short of the floor; otherwise starts the next period (and, pending,
    /// is woken when it ends).
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<TooSlow> {
        self.arm();
        let Some(timer) = self.timer.as_mut() else {
            return Poll::Pending;
        };
        while timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let elapsed = now.duration_since(self.since).as_secs_f64();
            let needed = self.floor.bytes_per_second as f64 * elapsed;
            if (self.bytes as f64) < needed {
                return Poll::Ready(TooSlow);
            }
            self.since = now;
            self.bytes = 0;
            timer.as_mut().reset(now + self.floor.window);
        }
        Poll::Pending
    }
}

pin_project_lite::pin_project! {
    /// The request body; a body without a declared length is charged to
    /// the budget as it arrives and fails with [`Overloaded`] when it no
    /// longer fits; with an upload floor, a body that arrives too slowly
    /// fails with [`TooSlow`].
    pub struct CountedBody<B> {
        #[pin]
        body: B,
        counted: Option<Counted>,
        pace: Option<Pace>,
    }
}

impl<B> Body for CountedBody<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Some(pace) = this.pace.as_mut() {
            pace.arm();
        }
        // The floor is checked when the client has nothing more to give
        // (the body is pending): a trickle is too slow as much as a stall,
        // but bytes that arrived while this process was busy elsewhere
        // (a starved task polled late) count for the client, not against it.
        let polled = match this.body.poll_frame(cx) {
            Poll::Pending => {
                if let Some(pace) = this.pace.as_mut() {
                    if let Poll::Ready(e) = pace.check(cx) {
                        *this.pace = None;
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                }
                return Poll::Pending;
            }
            Poll::Ready(polled) => polled,
        };
        let frame = match polled {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => {
                *this.pace = None;
                return Poll::Ready(None);
            }
        };
        if let Some(data) = frame.data_ref() {
            if let Some(pace) = this.pace.as_mut() {
                pace.bytes = pace.bytes.saturating_add(data.remaining() as u64);
            }
            if let Some(c) = this.counted {
                let more = reservation(data.remaining());
                if !c.admission.try_reserve(c.tenant.as_deref(), more, false) {
                    return Poll::Ready(Some(Err(Box::new(c.admission.refuse()))));
                }
                c.reserved.fetch_add(more, Ordering::AcqRel);
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// True when a body read failed because the admission budget ran out.
pub fn is_overloaded(e: &(dyn std::error::Error + 'static)) -> bool {
    caused_by::<Overloaded>(e)
}

/// True when a body read failed because it arrived too slowly.
pub fn is_too_slow(e: &(dyn std::error::Error + 'static)) -> bool {
    caused_by::<TooSlow>(e)
}

fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, StreamBody};
    use tower::{ServiceExt, service_fn};

    use super::*;

    #[test]
    fn work_reservations_share_the_budget_and_are_given_back() {
        let admission = Admission::new(4, 100);
        let a = admission.try_reserve_work(60).expect("fits");
        assert_eq!(admission.in_flight(), (0, 60));
        assert!(admission.try_reserve_work(50).is_none(), "over the budget");
        let b = admission.try_reserve_work(40).expect("fits exactly");
        drop(a);
        assert_eq!(admission.in_flight(), (0, 40));
        drop(b);
        assert_eq!(admission.in_flight(), (0, 0));
        assert_eq!(admission.refused(), 0, "not a refused request");
    }

    fn req(len: Option<usize>) -> Request<Full<Bytes>> {
        let mut b = Request::builder();
        if let Some(n) = len {
            b = b.header(CONTENT_LENGTH, n.to_string());
        }
        b.body(Full::new(Bytes::from(vec![b'a'; len.unwrap_or(10)])))
            .unwrap()
    }

    #[tokio::test]
    async fn slots_and_budget_are_taken_and_given_back() {
        let a = Admission::new(2, 1000);
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let svc = AdmissionLayer::new(a.clone()).layer(service_fn(move |_req| {
            let mut rx = release_rx.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
                Ok::<_, Overloaded>(Response::new(()))
            }
        }));
        // 100 declared bytes reserve 250.
        let one = tokio::spawn(svc.clone().oneshot(req(Some(100))));
        let two = tokio::spawn(svc.clone().oneshot(req(Some(100))));
        while a.in_flight().0 < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(a.in_flight(), (2, 500));
        // No third slot.
        assert!(svc.clone().oneshot(req(Some(1))).await.is_err());
        release_tx.send(true).unwrap();
        one.await.unwrap().unwrap();
        two.await.unwrap().unwrap();
        assert_eq!(a.in_flight(), (0, 0));
        // Over the budget by declaration alone.
        assert!(svc.clone().oneshot(req(Some(401))).await.is_err());
        assert_eq!(a.in_flight(), (0, 0));
        assert_eq!(a.refused(), 2);
    }

    #[tokio::test]
    async fn a_tenant_holds_its_share_while_another_is_active() {
        // Budget 1000, share 0.25: 250 while another tenant is active.
        let a = Admission::with(16, 1000, 0.25, None);
        assert!(a.try_reserve(Some("a"), 200, true));
        // Alone: beyond its share.
        assert!(a.try_reserve(Some("a"), 500, true));
        // Another tenant arrives: "a" may not take more.
        assert!(a.try_reserve(Some("b"), 100, true));
        assert!(!a.try_reserve(Some("a"), 10, true));
        // "b" may grow to its share, not beyond.
        assert!(a.try_reserve(Some("b"), 150, true));
        assert!(!a.try_reserve(Some("b"), 1, true));
        a.release(Some("a"), 700);
        a.release(Some("b"), 250);
        a.release(Some("b"), 0);
        assert_eq!(a.bytes.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_slower_than_the_floor_fails_after_the_grace_period() {
        use futures_util::StreamExt;
        let floor = UploadFloor {
            bytes_per_second: 1000,
            grace: Duration::from_secs(2),
            window: Duration::from_secs(1),
        };
        let a = Admission::with(4, 1 << 20, 1.0, Some(floor));
        let svc = AdmissionLayer::new(a.clone()).layer(service_fn(
            |req: Request<CountedBody<_>>| async move {
                let read = req.into_body().collect().await;
                Ok::<_, Overloaded>(Response::new(read.map(|c| c.to_bytes().len())))
            },
        ));
        // `per_tick` bytes every 100 ms, `ticks` times.
        let paced = |per_tick: usize, ticks: usize| {
            let s = futures_util::stream::unfold(0, move |i| async move {
                if i == ticks {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                let f: Result<Frame<Bytes>, std::convert::Infallible> =
                    Ok(Frame::data(Bytes::from(vec![b'x'; per_tick])));
                Some((f, i + 1))
            });
            let mut r = Request::new(StreamBody::new(s.boxed()));
            r.headers_mut().insert(
                CONTENT_LENGTH,
                (per_tick * ticks).to_string().parse().unwrap(),
            );
            r
        };
        // 1500 B/s for 4 s: above the floor all along.
        let res = svc.clone().oneshot(paced(150, 40)).await.unwrap();
        assert_eq!(*res.body().as_ref().unwrap(), 6000);
        // 500 B/s: fails at the end of the grace period.
        let started = Instant::now();
        let res = svc.clone().oneshot(paced(50, 100)).await.unwrap();
        let err = res.into_body().unwrap_err();
        assert!(is_too_slow(err.as_ref()), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // Fast, then stalled: fails at the end of the first slow window.
        let started = Instant::now();
        let fast_then_stall = {
            let s = futures_util::stream::unfold(0, |i| async move {
                match i {
                    0 => Some((
                        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![
                            b'x';
                            5000
                        ]))),
                        1,
                    )),
                    _ => {
                        std::future::pending::<()>().await;
                        None
                    }
                }
            });
            Request::new(StreamBody::new(s.boxed()))
        };
        let res = svc.clone().oneshot(fast_then_stall).await.unwrap();
        assert!(is_too_slow(res.into_body().unwrap_err().as_ref()));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!(a.in_flight(), (0, 0));
    }

    /// Bytes that were there all along count for the client: a reader that
    /// stops polling for longer than the grace period (a starved task) and
    /// then finds the rest of the body waiting does not fail it.
    #[tokio::test(start_paused = true)]
    async fn a_reader_that_was_late_does_not_blame_the_client() {
        use futures_util::StreamExt;
        let floor = UploadFloor {
            bytes_per_second: 1000,
            grace: Duration::from_secs(2),
            window: Duration::from_secs(1),
        };
        let a = Admission::with(4, 1 << 20, 1.0, Some(floor));
        let svc = AdmissionLayer::new(a.clone()).layer(service_fn(
            |req: Request<CountedBody<_>>| async move {
                let mut body = req.into_body();
                let first = body.frame().await.expect("a frame").map(|f| f.into_data());
                // Busy elsewhere for longer than the grace period.
                tokio::time::sleep(Duration::from_secs(3)).await;
                let rest = body.collect().await.map(|c| c.to_bytes().len());
                Ok::<_, Overloaded>(Response::new((first.is_ok(), rest.ok())))
            },
        ));
        // Three 100-byte frames, all there at once: 300 bytes, far below
        // 1000 B/s over 3 s.
        let ready =
            futures_util::stream::iter((0..3).map(|_| {
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'x'; 100])))
            }));
        let res = svc
            .oneshot(Request::new(StreamBody::new(ready.boxed())))
            .await
            .unwrap();
        assert_eq!(*res.body(), (true, Some(200)));
        assert_eq!(a.in_flight(), (0, 0));
    }

    #[tokio::test]
    async fn a_streamed_body_is_charged_as_it_arrives() {
        let a = Admission::new(4, 100);
        let svc = AdmissionLayer::new(a.clone()).layer(service_fn(
            |req: Request<CountedBody<_>>| async move {
                let read = req.into_body().collect().await;
                Ok::<_, Overloaded>(Response::new(read.map(|c| c.to_bytes().len())))
            },
        ));
        let chunks = |n: usize| {
            let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..n)
                .map(|_| Ok(Frame::data(Bytes::from_static(&[b'x'; 10]))))
                .collect();
            Request::new(StreamBody::new(futures_util::stream::iter(frames)))
        };
        // 4 chunks of 10 bytes reserve 100: fits.
        let res = svc.clone().oneshot(chunks(4)).await.unwrap();
        assert_eq!(*res.body().as_ref().unwrap(), 40);
        // 5 do not: the body read fails with Overloaded.
        let res = svc.clone().oneshot(chunks(5)).await.unwrap();
        let err = res.into_body().unwrap_err();
        assert!(is_overloaded(err.as_ref()), "{err}");
        assert_eq!(a.in_flight(), (0, 0));
    }
}
