//! The rate-limit layer: a tenant's rate and monthly quota, checked after
//! authentication and **before the body is read**, so a limited tenant's
//! 10 MiB upload is never buffered.
//!
//! Every liveness response of a limited tenant — the vendor's answer, a
//! gateway error after auth, a 429 — carries `RateLimit-Limit` (the burst),
//! `RateLimit-Remaining` (requests that could be made right now) and
//! `RateLimit-Reset` (seconds until the burst is full again); a 429 also
//! carries `Retry-After`. The headers go through the request's exchange
//! record, so they are added whoever answers.
//!
//! An optional gateway-wide cap (all tenants together, protecting the
//! vendor account) is checked after the tenant's limit; its refusal is
//! [`Refused::Global`].
//!
//! Refusals are the inner service's error type (`From<Refused>`), rendered
//! in the one place every error is.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use http::Request;
//! use livegate_ratelimit::layer::{RateLimitLayer, Refused};
//! use livegate_ratelimit::{Limit, LocalLimiter};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // What the stack resolved for the request's tenant, one extension.
//! #[derive(Clone)]
//! struct Policy(Arc<str>, Limit);
//! impl livegate_core::Tenanted for Policy {
//!     fn tenant_id(&self) -> &Arc<str> { &self.0 }
//! }
//! impl livegate_ratelimit::RatePolicy for Policy {
//!     fn limit(&self) -> Option<Limit> { Some(self.1) }
//! }
//! let limit = Limit { rate_per_second: 1.0, burst: 1, monthly_quota: None };
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(Arc::new(LocalLimiter::new())).policy::<Policy>())
//!     .service(service_fn(|_req: Request<()>| async { Ok::<_, Refused>("admitted") }));
//! let req = || {
//!     let mut r = Request::new(());
//!     r.extensions_mut().insert(Policy("acme".into(), limit));
//!     r
//! };
//! assert!(svc.clone().oneshot(req()).await.is_ok());
//! assert!(matches!(svc.oneshot(req()).await, Err(Refused::Rate { .. })));
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Extensions, HeaderName, HeaderValue, Request};
use livegate_core::Tenanted;
use livegate_core::exchange::Exchange;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::{Decision, Limit, Limiter};

/// A request's tenant and its limit, from its extensions.
type LimitOf = fn(&Extensions) -> Option<(Arc<str>, Limit)>;

/// What the rate-limit layer reads of a request's resolved tenant policy
/// (see [`livegate_core::tenant`]).
pub trait RatePolicy: Tenanted {
    /// The tenant's rate and quota; `None`: not limited.
    fn limit(&self) -> Option<Limit>;
}

fn read_limit<P: RatePolicy>(ext: &Extensions) -> Option<(Arc<str>, Limit)> {
    let p = ext.get::<P>()?;
    Some((p.tenant_id().clone(), p.limit()?))
}

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("tenant is over its rate")]
    Rate { retry_after: Duration },
    #[error("tenant's monthly quota is spent")]
    Quota { retry_after: Duration },
    #[error("the gateway-wide cap protecting the vendor account is reached")]
    Global { retry_after: Duration },
    #[error("the shared rate limiter is unreachable and the fail mode is closed")]
    Unavailable,
}

/// Applies [`RateLimit`]; see the [module docs](self).
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<dyn Limiter>,
    limit_of: Option<LimitOf>,
    global: Option<Limit>,
}

/// The limiter key of the gateway-wide cap; `:` is never in a tenant id.
pub const GLOBAL: &str = ":global";

impl RateLimitLayer {
    /// Checks requests against `limiter`; nothing is limited until
    /// [`Self::policy`] says where a request's limit is.
    pub fn new(limiter: Arc<dyn Limiter>) -> Self {
        Self {
            limiter,
            limit_of: None,
            global: None,
        }
    }

    /// A request's tenant and limit are read from its `P` extension; a
    /// request without one, or whose tenant has no limit, passes.
    pub fn policy<P: RatePolicy>(mut self) -> Self {
        self.limit_of = Some(read_limit::<P>);
        self
    }

    /// A cap over every tenant together (protecting the vendor account),
    /// checked after the tenant's own limit: a request it refuses has used
    /// its tenant's rate, which is the cheaper error for a cap meant to be
    /// hit rarely.
    pub fn global(mut self, limit: Option<Limit>) -> Self {
        self.global = limit;
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            limit_of: self.limit_of,
            global: self.global,
        }
    }
}

/// See the [module docs](self).
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<dyn Limiter>,
    limit_of: Option<LimitOf>,
    global: Option<Limit>,
}

/// Response future of [`RateLimit`].
pub type ResponseFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: From<Refused> + Send,
    S::Response: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone is not ready yet; keep the one that is (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some((tenant, limit)) = self.limit_of.and_then(|f| f(req.extensions())) else {
            return Box::pin(inner.call(req));
        };
        let limiter = self.limiter.clone();
        let global = self.global;
        Box::pin(async move {
            // A child of the request's span, for traces only (target
            // `livegate::trace`, never formatted into logs): the limiter alone.
            let span = tracing::info_span!(
                target: "livegate::trace",
                "rate_limit",
                otel.kind = "internal",
                decision = tracing::field::Empty
            );
            let decision = limiter.check(&tenant, limit).instrument(span.clone()).await;
            span.record("decision", decision.as_str());
            if let Some(x) = Exchange::of(&req) {
                for (name, value) in headers(&decision) {
                    x.add_response_header(name, value);
                }
            }
            match decision {
                Decision::Allowed { .. } => {
                    if let Some(cap) = global {
                        match limiter.check(GLOBAL, cap).await {
                            Decision::RateLimited { retry_after, .. }
                            | Decision::QuotaExceeded { retry_after, .. } => {
                                return Err(Refused::Global { retry_after }.into());
                            }
                            Decision::Unavailable => return Err(Refused::Unavailable.into()),
                            Decision::Allowed { .. } => {}
                        }
                    }
                    inner.call(req).await
                }
                Decision::RateLimited { retry_after, .. } => {
                    Err(Refused::Rate { retry_after }.into())
                }
                Decision::QuotaExceeded { retry_after, .. } => {
                    Err(Refused::Quota { retry_after }.into())
                }
                Decision::Unavailable => Err(Refused::Unavailable.into()),
            }
        })
    }
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` for a decision (none when
/// the limiter could not decide).
fn headers(d: &Decision) -> Vec<(HeaderName, HeaderValue)> {
    let (limit, remaining, reset) = match *d {
        Decision::Allowed {
            limit,
            remaining,
            reset,
            ..
        } => (limit, remaining, reset),
        Decision::RateLimited { limit, retry_after }
        | Decision::QuotaExceeded { limit, retry_after } => (limit, 0, retry_after),
        Decision::Unavailable => return Vec::new(),
    };
    vec![
        (
            HeaderName::from_static("ratelimit-limit"),
            HeaderValue::from(limit),
        ),
        (
            HeaderName::from_static("ratelimit-remaining"),
            HeaderValue::from(remaining),
        ),
        (
            HeaderName::from_static("ratelimit-reset"),
            HeaderValue::from(whole_seconds(reset)),
        ),
    ]
}

/// Rounded up, so a client that waits that long is never early.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::LocalLimiter;

    fn svc(
        global: Option<Limit>,
    ) -> impl Service<Request<()>, Response = &'static str, Error = Refused> + Clone {
        RateLimitLayer::new(Arc::new(LocalLimiter::new()))
            .policy::<Tenant>()
            .global(global)
            .layer(service_fn(|_req: Request<()>| async {
                Ok::<_, Refused>("admitted")
            }))
    }

    /// A tenant limited to 3 requests a month (and a burst of 100).
    #[derive(Clone)]
    struct Tenant(Arc<str>);

    impl Tenanted for Tenant {
        fn tenant_id(&self) -> &Arc<str> {
            &self.0
        }
    }

    impl RatePolicy for Tenant {
        fn limit(&self) -> Option<Limit> {
            Some(Limit {
                rate_per_second: 0.001,
                burst: 100,
                monthly_quota: Some(3),
            })
        }
    }

    fn req(tenant: Option<&'static str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(t) = tenant {
            r.extensions_mut().insert(Tenant(t.into()));
        }
        r
    }

    #[tokio::test]
    async fn the_quota_and_the_global_cap_refuse_with_their_own_reasons() {
        // Quota 3: the 4th is refused as the quota; untenanted requests pass.
        let s = svc(None);
        for _ in 0..3 {
            assert!(s.clone().oneshot(req(Some("acme"))).await.is_ok());
        }
        let err = s.clone().oneshot(req(Some("acme"))).await.unwrap_err();
        assert!(matches!(err, Refused::Quota { .. }), "{err}");
        assert!(s.clone().oneshot(req(None)).await.is_ok());

        // A cap of 2 over every tenant: the third request, whoever sends it.
        let cap = Limit {
            rate_per_second: 0.001,
            burst: 2,
            monthly_quota: None,
        };
        let s = svc(Some(cap));
        assert!(s.clone().oneshot(req(Some("a"))).await.is_ok());
        assert!(s.clone().oneshot(req(Some("b"))).await.is_ok());
        let err = s.clone().oneshot(req(Some("c"))).await.unwrap_err();
        assert!(matches!(err, Refused::Global { retry_after } if retry_after > Duration::ZERO));
    }
}
