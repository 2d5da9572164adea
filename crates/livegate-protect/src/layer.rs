//! The protection layer: between the payload layer (which accepted the
//! image) and the vendor call.
//!
//! For each request, with the tenant's [`ProtectionPolicy`]:
//! 1. **`Idempotency-Key`** (when sent): claims the key for this image's
//!    digest. A stored answer for the same image is served at once (marked
//!    `x-livegate-idempotent-replay: true`, no vendor call); the key with
//!    another image is refused (422); a concurrent duplicate waits for the
//!    first request's answer.
//! 2. **Metadata removal** (when on): the image without its metadata,
//!    which becomes the vendor body; in the request's task for images up
//!    to [`ProtectLayer::blocking_above`], else on tokio's blocking pool.
//! 3. **Fingerprint and replay detection** (when on): the perceptual hash
//!    of the decoded image, on the blocking pool, in one of the **decode
//!    slots** ([`ProtectLayer::image_concurrency`], two per CPU by default;
//!    each fingerprint's memory is bounded, see
//!    [`fingerprint`](crate::fingerprint)). The slots are shared fairly: a
//!    tenant holds at most half of them, so one tenant's flood leaves the
//!    other half to everyone else, and a request waits for its slot at most
//!    `slot_wait_ms` (250 ms by default). Without a slot in time — or when
//!    the fingerprint takes longer than `fingerprint_deadline_ms` — a `flag`
//!    request goes on with the exact check only (`replayCheck: "skipped"`
//!    in its audit record, counted per tenant), a `reject` request is
//!    refused with 503 and `Retry-After` (only that tenant's: the others
//!    still find slots). Then the store is asked for an earlier image in the
//!    scope that this one repeats. `reject` refuses (409) before the vendor;
//!    `flag` names it in `x-livegate-replay-of` (under `global` scope,
//!    another tenant's image is named `other-tenant`, never by its
//!    transactionId), and since nothing it finds stops the request, the
//!    fingerprint and lookup run while the vendor works (unless the
//!    deployment fails closed, when a failed lookup must refuse first).
//! 4. The inner service (the vendor call) runs.
//! 5. On the vendor's answer: the image is remembered under its
//!    transactionId, the score decision is added as `x-livegate-decision`,
//!    and the answer is stored for the idempotency key (vendor answers below
//!    500 only: a failed call may be retried for real).
//!
//! Everything it did goes into the exchange record's
//! [`ProtectionFacts`](livegate_core::exchange::ProtectionFacts) (for the
//! audit trail and the metrics): ids, kinds and distances only.
//!
//! Steps 1 to 3 run in a child span of the request's, `protect` (target
//! `livegate::trace`: exported to traces, never formatted into logs), with
//! `replay_match`, `replay_distance`, `metadata_removed` and
//! `idempotent_replay` when they apply; it ends with the lookup, and the
//! vendor call is never inside it, so the vendor's client span stays a
//! child of the request's span (in `flag` mode the two overlap in time).
//!
//! Store failures follow `redis.fail_mode`: `closed` refuses the request
//! (503), otherwise the check is skipped and the record says so.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use livegate_protect::{ProtectError, ProtectLayer, ProtectionPolicy, store::MemoryStore};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! // What the stack resolved for the request's tenant, one extension.
//! #[derive(Clone)]
//! struct Policy(Arc<str>, ProtectionPolicy);
//! impl livegate_core::Tenanted for Policy {
//!     fn tenant_id(&self) -> &Arc<str> { &self.0 }
//! }
//! impl livegate_protect::ProtectionSource for Policy {
//!     fn protection(&self) -> &ProtectionPolicy { &self.1 }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Arc::new(MemoryStore::default());
//! let svc = ServiceBuilder::new()
//!     .layer(ProtectLayer::new(store.clone(), store).policy::<Policy>())
//!     .service(service_fn(|_req: Request<Bytes>| async move {
//!         Ok::<_, ProtectError>(Response::new(Bytes::from_static(b"{}")))
//!     }));
//! // Without an accepted image in its extensions, a request passes as it is.
//! let res = svc.oneshot(Request::new(Bytes::new())).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # });
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Extensions, HeaderName, HeaderValue, Request, Response, StatusCode};
use livegate_core::exchange::{Exchange, ForwardedAnswer};
use livegate_core::{TRANSACTION_ID_HEADER, Tenanted};
use livegate_payload::{AcceptedImage, encode_vendor_body};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::fingerprint::perceptual_hash;
use crate::store::{
    Claim, Fingerprint, IdempotencyStore, ReplayMatch, ReplayStore, StoreError, StoredAnswer,
};
use crate::strip::{Removed, strip_metadata};
use crate::{ProtectionPolicy, ReplayMode, ReplayScope};

/// Request header: the client's idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Response header: the earlier transactionId a replayed image repeats.
pub const REPLAY_OF_HEADER: &str = "x-livegate-replay-of";
/// Response header: `pass`, `fail` or `review`.
pub const DECISION_HEADER: &str = "x-livegate-decision";
/// Response header on a stored answer served again: `true`.
pub const IDEMPOTENT_REPLAY_HEADER: &str = "x-livegate-idempotent-replay";

/// Why the protection layer answered a request itself.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProtectError {
    #[error("Idempotency-Key is empty, too long or not visible ASCII")]
    InvalidIdempotencyKey,
    #[error("image repeats an earlier request (replay policy reject)")]
    Replay,
    #[error("Idempotency-Key was used with a different image")]
    KeyReused,
    #[error("a request with this Idempotency-Key is still in progress")]
    InProgress,
    /// No decode slot within `slot_wait_ms` (or the fingerprint over its
    /// deadline) for a tenant whose replay policy is `reject`.
    #[error("image fingerprinting is busy for this tenant")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

fn valid_key(v: &HeaderValue) -> Option<&str> {
    let b = v.as_bytes();
    ((1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&b.len())
        && b.iter().all(|c| (0x21..=0x7e).contains(c)))
    .then(|| v.to_str().ok())
    .flatten()
}

/// A request's tenant and protection policy, from its extensions.
type PolicyFn = fn(&Extensions) -> Option<(String, ProtectionPolicy)>;

/// What the protection layer reads of a request's resolved tenant policy
/// (see [`livegate_core::tenant`]).
pub trait ProtectionSource: Tenanted {
    /// The tenant's protection: the deployment's with the tenant's changes.
    fn protection(&self) -> &ProtectionPolicy;
}

fn read_policy<P: ProtectionSource>(ext: &Extensions) -> Option<(String, ProtectionPolicy)> {
    let p = ext.get::<P>()?;
    Some((p.tenant_id().to_string(), *p.protection()))
}

/// Applies [`Protect`]; see the [module docs](self).
#[derive(Clone)]
pub struct ProtectLayer {
    shared: Shared,
}

#[derive(Clone)]
struct Shared {
    replay: Arc<dyn ReplayStore>,
    idempotency: Arc<dyn IdempotencyStore>,
    policy: Option<PolicyFn>,
    fail_closed: bool,
    lease: Duration,
    /// Decode slots, all tenants together.
    image_slots: Arc<tokio::sync::Semaphore>,
    /// Each tenant's share of the decode slots (half of them), made on
    /// first use: one entry per tenant that has sent an image.
    tenant_slots: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>>,
    per_tenant: usize,
    /// Where a fingerprint's working memory is reserved before it starts.
    memory: Option<Arc<livegate_core::admission::Admission>>,
    /// Metadata removal alone (no fingerprint) of larger images runs on
    /// the blocking pool; of smaller ones, in the request's task.
    blocking_above: usize,
}

impl ProtectLayer {
    /// Protection with these stores; a request is protected once
    /// [`Self::policy`] says where its tenant's policy is.
    pub fn new(replay: Arc<dyn ReplayStore>, idempotency: Arc<dyn IdempotencyStore>) -> Self {
        Self {
            shared: Shared {
                replay,
                idempotency,
                policy: None,
                fail_closed: false,
                lease: Duration::from_secs(60),
                image_slots: Arc::new(tokio::sync::Semaphore::new(0)),
                tenant_slots: Arc::default(),
                per_tenant: 1,
                memory: None,
                blocking_above: livegate_payload::layer::BLOCKING_ABOVE,
            },
        }
        .image_concurrency(2 * std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// A request's tenant and protection policy are read from its `P`
    /// extension; a request without one passes untouched.
    pub fn policy<P: ProtectionSource>(mut self) -> Self {
        self.shared.policy = Some(read_policy::<P>);
        self
    }

    /// Refuse requests (503) when a store cannot be consulted, instead of
    /// skipping its check.
    pub fn fail_closed(mut self, closed: bool) -> Self {
        self.shared.fail_closed = closed;
        self
    }

    /// How many images may be fingerprinted (decoded) at once, the decode
    /// slots; one tenant holds at most half of them (at least one). The
    /// default is two per CPU (measured: one per CPU cost ~5 % throughput
    /// at 16 connections, from the hand-over gaps; two per CPU none). At
    /// least 1.
    pub fn image_concurrency(mut self, images: usize) -> Self {
        let images = images.max(1);
        self.shared.image_slots = Arc::new(tokio::sync::Semaphore::new(images));
        self.shared.tenant_slots = Arc::default();
        self.shared.per_tenant = (images / 2).max(1);
        self
    }

    /// Images larger than `bytes` have their metadata removed on tokio's
    /// blocking pool when there is no fingerprint to take; smaller ones in
    /// the request's own task, which saves two thread hand-overs a request
    /// (removal is a walk over the container's segments, and a copy only
    /// when something is removed). A fingerprint (a pixel decode) always
    /// runs on the blocking pool. The default is the payload layer's
    /// [`BLOCKING_ABOVE`](livegate_payload::layer::BLOCKING_ABOVE).
    pub fn blocking_above(mut self, bytes: usize) -> Self {
        self.shared.blocking_above = bytes;
        self
    }

    /// Reserve each fingerprint's working memory
    /// ([`MAX_WORKING_MEMORY`](crate::fingerprint::MAX_WORKING_MEMORY)) in
    /// admission control's in-flight budget before it starts, so bodies and
    /// decodes share one bound. When the budget cannot take it, the
    /// fingerprint is skipped as when no decode slot is free.
    pub fn memory_budget(mut self, admission: Arc<livegate_core::admission::Admission>) -> Self {
        self.shared.memory = Some(admission);
        self
    }

    /// How long an idempotency claim lasts if its holder never answers (a
    /// crashed replica): longer than the slowest vendor call.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.shared.lease = lease;
        self
    }
}

impl<S> Layer<S> for ProtectLayer {
    type Service = Protect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Protect {
            inner,
            shared: Arc::new(self.shared.clone()),
        }
    }
}

/// See the [module docs](self).
#[derive(Clone)]
pub struct Protect<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, E> Service<Request<Bytes>> for Protect<S>
where
    S: Service<Request<Bytes>, Response = Response<B>, Error = E> + Clone + Send + 'static,
    S::Future: Send,
    B: From<Bytes> + Send + 'static,
    E: From<ProtectError> + Send + 'static,
{
    type Response = Response<B>;
    type Error = E;
    type Future = BoxFuture<Result<Response<B>, E>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(protect(shared, inner, req))
    }
}

/// What the blocking pool computed for one image.
#[derive(Default)]
struct ImageWork {
    phash: Option<u64>,
    /// The fingerprint was asked for but not taken: no decode slot in time,
    /// or past its deadline.
    skipped: bool,
    /// The new vendor body, when metadata was removed.
    body: Option<Vec<u8>>,
    removed: Removed,
}

fn image_work(decoded: &Bytes, phash: bool, strip: bool, max_pixels: u64) -> ImageWork {
    #[cfg(test)]
    let _counted = phash.then(tests::InFlight::enter);
    let mut work = ImageWork::default();
    if phash {
        match perceptual_hash(decoded, max_pixels) {
            Ok(h) => work.phash = Some(h),
            // Only the exact digest is checked for this image.
            Err(e) => tracing::debug!(error = %e, "no perceptual hash"),
        }
    }
    if strip {
        match strip_metadata(decoded) {
            Ok(s) => {
                work.removed = s.removed;
                work.body = s.image.map(|img| encode_vendor_body(&img));
            }
            // The header was checked already; a container the stripper
            // cannot walk is forwarded as it came.
            Err(e) => tracing::debug!(error = %e, "metadata not removed"),
        }
    }
    work
}

async fn protect<S, B, E>(
    shared: Arc<Shared>,
    mut inner: S,
    mut req: Request<Bytes>,
) -> Result<Response<B>, E>
where
    S: Service<Request<Bytes>, Response = Response<B>, Error = E>,
    B: From<Bytes>,
    E: From<ProtectError>,
{
    let image = req.extensions_mut().remove::<AcceptedImage>();
    let exchange = req.extensions().get::<Exchange>().cloned();
    let key = req.headers().get(IDEMPOTENCY_KEY_HEADER).cloned();
    let policy = shared.policy.and_then(|f| f(req.extensions()));
    let (Some(image), Some((tenant, policy))) = (image, policy) else {
        return inner.call(req).await;
    };
    let note = |f: &dyn Fn(&mut livegate_core::exchange::ProtectionFacts)| {
        if let Some(x) = &exchange {
            x.update_protection(f);
        }
    };
    // Ends (is dropped) before the vendor call.
    let span = tracing::info_span!(
        target: "livegate::trace",
        "protect",
        otel.kind = "internal",
        replay_match = tracing::field::Empty,
        replay_distance = tracing::field::Empty,
        metadata_removed = tracing::field::Empty,
        idempotent_replay = tracing::field::Empty,
    );

    // 1. Idempotency-Key.
    let mut claim = None;
    if let Some(raw) = &key {
        let key = valid_key(raw).ok_or(ProtectError::InvalidIdempotencyKey)?;
        let claimed = shared
            .idempotency
            .claim(
                &tenant,
                key,
                &image.sha256,
                shared.lease,
                policy.idempotency_wait(),
            )
            .instrument(span.clone())
            .await;
        match claimed {
            Ok(Claim::Claimed) => {
                claim = Some(ClaimGuard {
                    store: shared.idempotency.clone(),
                    tenant: tenant.clone(),
                    key: key.to_owned(),
                    digest: image.sha256,
                    done: false,
                });
            }
            Ok(Claim::Done(answer)) => {
                let txid = answer
                    .headers
                    .iter()
                    .find(|(n, _)| n == TRANSACTION_ID_HEADER)
                    .map(|(_, v)| v.clone());
                note(&|p| {
                    p.idempotent_replay = true;
                    p.stored_transaction_id.clone_from(&txid);
                });
                span.record("idempotent_replay", true);
                return Ok(stored_response(answer));
            }
            Ok(Claim::Mismatch) => return Err(ProtectError::KeyReused.into()),
            Ok(Claim::Busy) => return Err(ProtectError::InProgress.into()),
            Err(e) => store_failed(&shared, &exchange, "idempotency claim", e)?,
        }
    }

    // 2. Fingerprint and metadata removal. In `flag` mode, when a failed
    // lookup would not refuse the request, nothing before the vendor call
    // waits for the fingerprint: it is taken, and the lookup made, while the
    // vendor works (the decode can take longer than the vendor on a large
    // photo). Otherwise both come first.
    let replay_on = policy.replay != ReplayMode::Off;
    let alongside = policy.replay == ReplayMode::Flag && !shared.fail_closed;
    let phash_now = replay_on && !alongside;
    let strip = policy.strip_metadata;
    let max_pixels = policy.max_pixels;
    let mut work = match &image.decoded {
        // Removal alone is a walk over the segments: small images stay in
        // this task; a fingerprint (a pixel decode) never does.
        Some(decoded) if strip && !phash_now && decoded.len() <= shared.blocking_above => {
            let _entered = span.enter();
            image_work(decoded, false, true, max_pixels)
        }
        Some(decoded) if phash_now || strip => {
            on_pool(&shared, &tenant, &policy, decoded.clone(), phash_now, strip)
                .instrument(span.clone())
                .await
        }
        _ => ImageWork::default(),
    };
    if work.skipped && policy.replay == ReplayMode::Reject {
        note(&|p| p.replay_check = Some(REPLAY_CHECK_SKIPPED));
        return Err(ProtectError::Busy.into());
    }
    if work.removed.any() {
        let kinds = work.removed.kinds();
        span.record("metadata_removed", kinds.join(",").as_str());
        note(&|p| p.metadata_removed.clone_from(&kinds));
    }
    if let Some(body) = work.body.take() {
        *req.body_mut() = Bytes::from(body);
    }
    let scope = match policy.replay_scope {
        ReplayScope::Tenant => tenant.clone(),
        ReplayScope::Global => "*".to_owned(),
    };
    let mut fp = Fingerprint {
        sha256: image.sha256,
        phash: work.phash,
    };
    if replay_on && !alongside {
        let check = replay_check(&work);
        note(&|p| p.replay_check = Some(check));
    }
    let lookup = |fp: Fingerprint| {
        let (shared, scope) = (&shared, &scope);
        async move {
            let found = shared
                .replay
                .find(scope, &fp, policy.replay_max_distance)
                .await;
            if let Ok(Some(m)) = &found {
                let span = tracing::Span::current();
                span.record("replay_match", m.kind());
                span.record("replay_distance", m.distance);
            }
            (fp, found)
        }
    };

    // 3. Replay detection, then 4. the vendor call.
    let mut res = match image.decoded {
        Some(decoded) if replay_on && alongside => {
            let fingerprint_then_lookup = async {
                let work = on_pool(&shared, &tenant, &policy, decoded, true, false).await;
                let check = replay_check(&work);
                note(&|p| p.replay_check = Some(check));
                lookup(Fingerprint {
                    phash: work.phash,
                    ..fp
                })
                .await
            };
            // The span ends with the lookup (this is its last handle), so
            // it does not enclose the vendor call's span.
            let in_span = async move { fingerprint_then_lookup.instrument(span).await };
            let ((looked_up, found), res) = tokio::join!(in_span, inner.call(req));
            fp = looked_up;
            // `alongside`: neither a match nor a store error refuses.
            replay_found(&shared, &exchange, &tenant, &policy, found)?;
            res?
        }
        _ => {
            if replay_on {
                let (_, found) = lookup(fp).instrument(span.clone()).await;
                replay_found(&shared, &exchange, &tenant, &policy, found)?;
            }
            drop(span);
            inner.call(req).await?
        }
    };

    // 5. What the answer tells.
    let Some(answer) = res.extensions_mut().remove::<ForwardedAnswer>() else {
        return Ok(res);
    };
    if replay_on {
        if let Some(txid) = answer.transaction_id.as_deref() {
            let recorded = shared
                .replay
                .record(
                    &scope,
                    &fp,
                    &stored_id(&tenant, txid),
                    policy.replay_window(),
                )
                .await;
            if let Err(e) = recorded {
                // The vendor has answered: the client gets its answer
                // whatever the fail mode; only the memory is missing.
                tracing::warn!(error = %e, "replay record not stored");
                note(&|p| p.store_error = true);
            }
        }
    }
    if let (Some(d), Some(score)) = (policy.decision(), answer.score) {
        let decision = d.decide(score).as_str();
        note(&|p| p.decision = Some(decision));
        res.headers_mut().insert(
            HeaderName::from_static(DECISION_HEADER),
            HeaderValue::from_static(decision),
        );
    }
    if let Some(mut guard) = claim {
        if res.status().as_u16() < 500 {
            let stored = StoredAnswer {
                status: res.status().as_u16(),
                body: answer.body,
                headers: kept_headers(&res, exchange.as_ref()),
            };
            let done = guard
                .store
                .complete(
                    &guard.tenant,
                    &guard.key,
                    &guard.digest,
                    &stored,
                    policy.idempotency_retention(),
                )
                .await;
            if let Err(e) = done {
                tracing::warn!(error = %e, "idempotent answer not stored");
                note(&|p| p.store_error = true);
            } else {
                guard.done = true;
            }
        }
        // Otherwise the guard releases the key as it drops.
    }
    Ok(res)
}

/// A store error: refuses the request when the deployment fails closed,
/// else notes it and lets the request go on without that check.
fn store_failed(
    shared: &Shared,
    exchange: &Option<Exchange>,
    what: &str,
    e: StoreError,
) -> Result<(), ProtectError> {
    tracing::warn!(error = %e, check = what, "protection store failed");
    if let Some(x) = exchange {
        x.update_protection(|p| p.store_error = true);
    }
    if shared.fail_closed {
        Err(ProtectError::Store(e))
    } else {
        Ok(())
    }
}

/// What a replay lookup found, into the exchange record and the response
/// headers; `reject` refuses
/// a match, and a store error refuses when the deployment fails closed.
fn replay_found(
    shared: &Shared,
    exchange: &Option<Exchange>,
    tenant: &str,
    policy: &ProtectionPolicy,
    found: Result<Option<ReplayMatch>, StoreError>,
) -> Result<(), ProtectError> {
    let m = match found {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(()),
        Err(e) => return store_failed(shared, exchange, "replay lookup", e),
    };
    // Another tenant's image is never named by its transactionId.
    let earlier = earlier_image(policy.replay_scope, tenant, &m.transaction_id);
    if let Some(x) = exchange {
        x.update_protection(|p| {
            p.replay_of = Some(earlier.to_owned());
            p.replay_match = Some(m.kind());
            p.replay_distance = Some(m.distance);
        });
        if let Ok(v) = HeaderValue::from_str(earlier) {
            x.add_response_header(HeaderName::from_static(REPLAY_OF_HEADER), v);
        }
    }
    if policy.replay == ReplayMode::Reject {
        return Err(ProtectError::Replay);
    }
    Ok(())
}

/// `x-livegate-replay-of` (and `replayOf` in the audit record) when the
/// earlier image was another tenant's (`global` scope).
pub const OTHER_TENANT: &str = "other-tenant";

/// What the replay store keeps as an image's id: `<tenant> <transactionId>`
/// (tenant ids and the vendor's transactionIds hold no space), so that a
/// match in the `global` scope tells whose image it was.
fn stored_id(tenant: &str, transaction_id: &str) -> String {
    format!("{tenant} {transaction_id}")
}

/// What a match tells `tenant` of the earlier image: its transactionId when
/// it was the tenant's own, else [`OTHER_TENANT`]. An id stored before
/// owners were recorded (a bare transactionId) is the tenant's own in the
/// `tenant` scope, which holds nothing else, and anyone's in the `global`
/// one.
fn earlier_image<'a>(scope: ReplayScope, tenant: &str, stored: &'a str) -> &'a str {
    match (stored.split_once(' '), scope) {
        (Some((owner, txid)), _) if owner == tenant => txid,
        (None, ReplayScope::Tenant) => stored,
        _ => OTHER_TENANT,
    }
}

/// `replayCheck` in the audit record: both checks ran.
pub const REPLAY_CHECK_PERCEPTUAL: &str = "perceptual";
/// `replayCheck`: the exact check only, the image having no perceptual
/// hash (a format or size the fingerprint does not decode).
pub const REPLAY_CHECK_EXACT: &str = "exact";
/// `replayCheck`: the exact check only, the fingerprint skipped (no decode
/// slot within `slot_wait_ms`, or past `fingerprint_deadline_ms`).
pub const REPLAY_CHECK_SKIPPED: &str = "skipped";

fn replay_check(work: &ImageWork) -> &'static str {
    match (work.phash, work.skipped) {
        (Some(_), _) => REPLAY_CHECK_PERCEPTUAL,
        (None, true) => REPLAY_CHECK_SKIPPED,
        (None, false) => REPLAY_CHECK_EXACT,
    }
}

/// Image work on tokio's blocking pool. A fingerprint needs a decode slot
/// (one of the tenant's share and one of all, each waited for until
/// `slot_wait_ms` from now) and its working memory reserved in admission's
/// budget; without either it is skipped, and metadata
/// removal, when asked for, runs all the same (it decodes no pixels). A
/// fingerprint alone is waited for at most `fingerprint_deadline_ms`; past
/// it the request goes on without it, and the decode ends on the pool still
/// holding its slots. A panic there is carried back to the request's task.
async fn on_pool(
    shared: &Shared,
    tenant: &str,
    policy: &ProtectionPolicy,
    decoded: Bytes,
    mut phash: bool,
    strip: bool,
) -> ImageWork {
    let mut slots = None;
    let mut skipped = false;
    let mut memory = None;
    if phash {
        slots = decode_slots(shared, tenant, policy.slot_wait()).await;
        if slots.is_some() {
            if let Some(admission) = &shared.memory {
                memory = admission.try_reserve_work(crate::fingerprint::MAX_WORKING_MEMORY);
                if memory.is_none() {
                    tracing::debug!("no budget for a decode; the exact check only");
                    slots = None;
                }
            }
        }
        phash = slots.is_some();
        skipped = !phash;
    }
    if !phash && !strip {
        return ImageWork {
            skipped,
            ..ImageWork::default()
        };
    }
    let max_pixels = policy.max_pixels;
    // The slots go with the work: a request that goes away (or stops
    // waiting) frees them only when its decode ends.
    let task = tokio::task::spawn_blocking(move || {
        let _held = (slots, memory);
        image_work(&decoded, phash, strip, max_pixels)
    });
    let done = if phash && !strip {
        match tokio::time::timeout(policy.fingerprint_deadline(), task).await {
            Ok(done) => done,
            Err(_) => {
                tracing::debug!("fingerprint past its deadline; the exact check only");
                return ImageWork {
                    skipped: true,
                    ..ImageWork::default()
                };
            }
        }
    } else {
        task.await
    };
    let mut work = match done {
        Ok(w) => w,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled: only when the runtime shuts down.
            Err(_) => ImageWork::default(),
        },
    };
    work.skipped = skipped;
    work
}

type DecodeSlots = (
    tokio::sync::OwnedSemaphorePermit,
    tokio::sync::OwnedSemaphorePermit,
);

/// A slot of the tenant's share, then one of all, both by `wait` from now.
async fn decode_slots(shared: &Shared, tenant: &str, wait: Duration) -> Option<DecodeSlots> {
    let share = {
        let mut shares = shared
            .tenant_slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match shares.get(tenant) {
            Some(s) => s.clone(),
            None => shares
                .entry(tenant.to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(shared.per_tenant)))
                .clone(),
        }
    };
    let until = tokio::time::Instant::now() + wait;
    // The semaphores are never closed.
    let mine = tokio::time::timeout_at(until, share.acquire_owned())
        .await
        .ok()?
        .ok()?;
    let any = tokio::time::timeout_at(until, shared.image_slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()?;
    Some((mine, any))
}

/// The headers of a forwarded answer that a replay of it gets again.
fn kept_headers<B>(res: &Response<B>, exchange: Option<&Exchange>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in [TRANSACTION_ID_HEADER, DECISION_HEADER] {
        if let Some(v) = res.headers().get(name).and_then(|v| v.to_str().ok()) {
            out.push((name.to_owned(), v.to_owned()));
        }
    }
    if let Some(v) = exchange.and_then(|x| x.response_header(REPLAY_OF_HEADER)) {
        out.push((REPLAY_OF_HEADER.to_owned(), v));
    }
    out
}

/// A stored answer as the response to a retry.
fn stored_response<B: From<Bytes>>(answer: StoredAnswer) -> Response<B> {
    let mut res = Response::new(B::from(answer.body));
    *res.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in &answer.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.insert(n, v);
        }
    }
    h.insert(
        HeaderName::from_static(IDEMPOTENT_REPLAY_HEADER),
        HeaderValue::from_static("true"),
    );
    res
}

/// Releases an idempotency claim that was not completed: the vendor
/// failed, the answer was a 5xx, or the client went away (the future was
/// dropped).
struct ClaimGuard {
    store: Arc<dyn IdempotencyStore>,
    tenant: String,
    key: String,
    digest: [u8; 32],
    done: bool,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // the lease ends it
        };
        let store = self.store.clone();
        let tenant = std::mem::take(&mut self.tenant);
        let key = std::mem::take(&mut self.key);
        let digest = self.digest;
        rt.spawn(async move {
            if let Err(e) = store.release(&tenant, &key, &digest).await {
                tracing::warn!(error = %e, "idempotency claim not released; its lease ends it");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::policy::ProtectionPolicy;
    use crate::store::MemoryStore;

    static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
    static MOST_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
    /// Held by the tests that do image work, so that the counts above see
    /// one test's work alone.
    static IMAGE_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Counts the image decodes (fingerprints) running at once (this
    /// module's tests only).
    pub(super) struct InFlight;

    impl InFlight {
        pub(super) fn enter() -> Self {
            let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
            MOST_IN_FLIGHT.fetch_max(now, Ordering::SeqCst);
            Self
        }
    }

    impl Drop for InFlight {
        fn drop(&mut self) {
            IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A PNG of `w`×`h` pixels of busy colours.
    fn png(w: u32, h: u32) -> Bytes {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
        });
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        Bytes::from(out)
    }

    /// A tenant's resolved protection policy, as the stack puts it in a
    /// request's extensions.
    #[derive(Clone)]
    struct TestPolicy(Arc<str>, ProtectionPolicy);

    impl Tenanted for TestPolicy {
        fn tenant_id(&self) -> &Arc<str> {
            &self.0
        }
    }

    impl ProtectionSource for TestPolicy {
        fn protection(&self) -> &ProtectionPolicy {
            &self.1
        }
    }

    /// A request carrying an accepted PNG (digest `[id; 32]`), tenant `a`'s
    /// `policy`, and the exchange its facts are noted in.
    fn png_request(png: &Bytes, id: u8, policy: ProtectionPolicy) -> (Request<Bytes>, Exchange) {
        let exchange = Exchange::detached("r-1");
        let mut req = Request::new(Bytes::new());
        req.extensions_mut().insert(TestPolicy("a".into(), policy));
        req.extensions_mut().insert(exchange.clone());
        req.extensions_mut().insert(AcceptedImage {
            format: livegate_payload::ImageFormat::Png,
            sha256: [id; 32],
            decoded: Some(png.clone()),
        });
        (req, exchange)
    }

    /// Twelve requests at once, each with an image to fingerprint: all are
    /// answered, never more than `image_concurrency` decodes at a time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn image_work_is_bounded() {
        use tower::{ServiceExt, service_fn};

        let _alone = IMAGE_TESTS.lock().await;
        let png = png(1200, 900);
        let store = Arc::new(MemoryStore::default());
        let svc = ProtectLayer::new(store.clone(), store)
            .policy::<TestPolicy>()
            .image_concurrency(2)
            .layer(service_fn(|_req: Request<Bytes>| async move {
                Ok::<_, ProtectError>(Response::new(Bytes::from_static(b"{}")))
            }));
        let calls = (0..12u8).map(|i| {
            let mut req = Request::new(Bytes::new());
            req.extensions_mut()
                .insert(TestPolicy("t".into(), ProtectionPolicy::default()));
            req.extensions_mut().insert(AcceptedImage {
                format: livegate_payload::ImageFormat::Png,
                sha256: [i; 32],
                decoded: Some(png.clone()),
            });
            tokio::spawn(svc.clone().oneshot(req))
        });
        let calls: Vec<_> = calls.collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().status(), 200);
        }
        let most = MOST_IN_FLIGHT.load(Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} images at once");
    }

    /// A replay store that records whether it was asked, and in `flag`
    /// mode answers only once the vendor has been called: a layer that
    /// waited for the lookup before the vendor call would never finish.
    struct OrderedStore {
        vendor_called: Arc<tokio::sync::Notify>,
        looked_up: Arc<std::sync::atomic::AtomicBool>,
        wait_for_vendor: bool,
    }

    impl ReplayStore for OrderedStore {
        fn find(
            &self,
            _: &str,
            _: &Fingerprint,
            _: u32,
        ) -> crate::store::BoxFuture<'_, Result<Option<ReplayMatch>, StoreError>> {
            Box::pin(async move {
                if self.wait_for_vendor {
                    self.vendor_called.notified().await;
                }
                self.looked_up.store(true, Ordering::SeqCst);
                Ok(None)
            })
        }

        fn record<'a>(
            &'a self,
            _: &'a str,
            _: &'a Fingerprint,
            _: &'a str,
            _: Duration,
        ) -> crate::store::BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(std::future::ready(Ok(())))
        }
    }

    /// `flag`: the fingerprint is taken and looked up while the vendor
    /// works; `reject`, or `flag` failing closed: before the vendor call.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flag_mode_looks_up_alongside_the_vendor_call() {
        use tower::{ServiceExt, service_fn};

        let _alone = IMAGE_TESTS.lock().await;
        let png = png(320, 240);
        for (mode, fail_closed, alongside) in [
            (ReplayMode::Flag, false, true),
            (ReplayMode::Reject, false, false),
            (ReplayMode::Flag, true, false),
        ] {
            let called = Arc::new(tokio::sync::Notify::new());
            let looked = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let store = Arc::new(OrderedStore {
                vendor_called: called.clone(),
                looked_up: looked.clone(),
                wait_for_vendor: alongside,
            });
            let policy = ProtectionPolicy {
                replay: mode,
                ..ProtectionPolicy::default()
            };
            let seen = looked.clone();
            let svc = ProtectLayer::new(store, Arc::new(MemoryStore::default()))
                .policy::<TestPolicy>()
                .fail_closed(fail_closed)
                .layer(service_fn(move |_req: Request<Bytes>| {
                    let order = if seen.load(Ordering::SeqCst) {
                        "lookup first"
                    } else {
                        "vendor first"
                    };
                    called.notify_one();
                    async move {
                        Ok::<_, ProtectError>(Response::new(Bytes::from_static(order.as_bytes())))
                    }
                }));
            let mut req = Request::new(Bytes::new());
            req.extensions_mut().insert(TestPolicy("t".into(), policy));
            req.extensions_mut().insert(AcceptedImage {
                format: livegate_payload::ImageFormat::Png,
                sha256: [7; 32],
                decoded: Some(png.clone()),
            });
            let res = tokio::time::timeout(Duration::from_secs(30), svc.oneshot(req))
                .await
                .unwrap_or_else(|_| panic!("{mode:?}: the lookup waited for the vendor call"))
                .unwrap();
            let expected = if alongside {
                "vendor first"
            } else {
                "lookup first"
            };
            assert_eq!(res.body(), expected, "{mode:?}, fail closed {fail_closed}");
            assert!(looked.load(Ordering::SeqCst), "{mode:?}: looked up");
        }
    }

    /// One tenant holds at most half of the decode slots: with its share
    /// taken, its next request waits `slot_wait` and gets none, while
    /// another tenant's gets one at once.
    #[tokio::test(start_paused = true)]
    async fn decode_slots_are_shared_fairly() {
        let store = Arc::new(MemoryStore::default());
        let layer = ProtectLayer::new(store.clone(), store).image_concurrency(4);
        let shared = &layer.shared;
        let wait = Duration::from_millis(250);
        let a1 = decode_slots(shared, "a", wait).await.expect("a's first");
        let a2 = decode_slots(shared, "a", wait).await.expect("a's second");
        let started = tokio::time::Instant::now();
        assert!(
            decode_slots(shared, "a", wait).await.is_none(),
            "a over half"
        );
        assert_eq!(started.elapsed(), wait, "waited its deadline, no longer");
        let b = decode_slots(shared, "b", wait)
            .await
            .expect("b finds a slot");
        let c = decode_slots(shared, "c", wait)
            .await
            .expect("c finds one too");
        // All four taken: a fifth waits for one to be released.
        let started = tokio::time::Instant::now();
        assert!(decode_slots(shared, "d", wait).await.is_none());
        assert_eq!(started.elapsed(), wait);
        drop(a1);
        assert!(decode_slots(shared, "d", wait).await.is_some());
        drop((a2, b, c));
        // One slot in all: a tenant may still take it.
        let store = Arc::new(MemoryStore::default());
        let one = ProtectLayer::new(store.clone(), store).image_concurrency(1);
        assert!(decode_slots(&one.shared, "a", wait).await.is_some());
    }

    /// A tenant over its share of the slots: `reject` is refused (Busy,
    /// 503), `flag` goes on to the vendor with the exact check only and
    /// `replayCheck: "skipped"`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_slot_reject_is_busy_and_flag_is_skipped() {
        use tower::{ServiceExt, service_fn};
        let _alone = IMAGE_TESTS.lock().await;

        let png = png(320, 240);
        for (mode, expect_busy) in [(ReplayMode::Reject, true), (ReplayMode::Flag, false)] {
            let store = Arc::new(MemoryStore::default());
            let policy = ProtectionPolicy {
                replay: mode,
                slot_wait_ms: 20,
                ..ProtectionPolicy::default()
            };
            let layer = ProtectLayer::new(store.clone(), store)
                .policy::<TestPolicy>()
                .image_concurrency(2);
            // Tenant a's share (one slot of two) is held elsewhere.
            let held = decode_slots(&layer.shared, "a", Duration::ZERO)
                .await
                .expect("a slot");
            let svc = layer.layer(service_fn(|_req: Request<Bytes>| async move {
                Ok::<_, ProtectError>(Response::new(Bytes::from_static(b"{}")))
            }));
            let (req, exchange) = png_request(&png, 9, policy);
            let res = svc.oneshot(req).await;
            if expect_busy {
                assert_eq!(res.err(), Some(ProtectError::Busy), "{mode:?}");
            } else {
                assert_eq!(res.expect("forwarded").status(), 200);
            }
            let facts = exchange.protection().expect("facts");
            assert_eq!(facts.replay_check, Some(REPLAY_CHECK_SKIPPED), "{mode:?}");
            drop(held);
        }
    }

    /// A fingerprint's working memory is reserved in admission's budget:
    /// when the budget cannot take it the fingerprint is skipped, and what
    /// was reserved is given back when the decode ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decode_memory_is_admitted() {
        use livegate_core::admission::Admission;
        use tower::{ServiceExt, service_fn};
        let _alone = IMAGE_TESTS.lock().await;

        let png = png(320, 240);
        for (budget, expect) in [
            (16 << 20, REPLAY_CHECK_SKIPPED),
            (64 << 20, REPLAY_CHECK_PERCEPTUAL),
        ] {
            let admission = Admission::new(10, budget);
            let store = Arc::new(MemoryStore::default());
            let reject = ProtectionPolicy {
                replay: ReplayMode::Reject,
                ..ProtectionPolicy::default()
            };
            let svc = ProtectLayer::new(store.clone(), store)
                .policy::<TestPolicy>()
                .memory_budget(admission.clone())
                .layer(service_fn(|_req: Request<Bytes>| async move {
                    Ok::<_, ProtectError>(Response::new(Bytes::from_static(b"{}")))
                }));
            let (req, exchange) = png_request(&png, 3, reject);
            let res = svc.oneshot(req).await;
            let facts = exchange.protection().expect("facts");
            assert_eq!(facts.replay_check, Some(expect), "budget {budget}");
            assert_eq!(res.is_ok(), expect == REPLAY_CHECK_PERCEPTUAL);
            assert_eq!(admission.in_flight().1, 0, "given back");
        }
    }

    #[test]
    fn another_tenants_image_is_never_named() {
        let stored = stored_id("acme", "tx-1");
        assert_eq!(earlier_image(ReplayScope::Global, "acme", &stored), "tx-1");
        assert_eq!(earlier_image(ReplayScope::Tenant, "acme", &stored), "tx-1");
        assert_eq!(
            earlier_image(ReplayScope::Global, "globex", &stored),
            OTHER_TENANT
        );
        // Recorded before owners were: its own in the tenant scope only.
        assert_eq!(earlier_image(ReplayScope::Tenant, "acme", "tx-0"), "tx-0");
        assert_eq!(
            earlier_image(ReplayScope::Global, "acme", "tx-0"),
            OTHER_TENANT
        );
    }

    #[test]
    fn idempotency_keys() {
        let ok = HeaderValue::from_static("order-42:retry");
        assert_eq!(valid_key(&ok), Some("order-42:retry"));
        for bad in ["", "has space", "tab\there"] {
            let v = HeaderValue::from_str(bad).unwrap();
            assert_eq!(valid_key(&v), None, "{bad:?}");
        }
        let long = HeaderValue::from_str(&"k".repeat(256)).unwrap();
        assert_eq!(valid_key(&long), None);
        let max = HeaderValue::from_str(&"k".repeat(255)).unwrap();
        assert!(valid_key(&max).is_some());
        let non_ascii = HeaderValue::from_bytes("é".as_bytes()).unwrap();
        assert_eq!(valid_key(&non_ascii), None);
    }
}
