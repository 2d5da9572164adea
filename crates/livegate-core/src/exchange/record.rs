use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::ErrorKind;

/// How a liveness request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The vendor answered and its answer went to the client, whatever its
    /// status (the vendor's own 1016/1017 included).
    Forwarded,
    /// The gateway refused the request itself: a 4xx of the error table.
    Rejected,
    /// The gateway or the vendor failed: a 5xx of the error table.
    Failed,
    /// The client went away before its answer was ready.
    ClientGone,
    /// A bug: handling the request panicked; answered 500.
    Panicked,
}

impl Outcome {
    /// Short lowercase name, for logs, metrics labels and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::ClientGone => "client_gone",
            Outcome::Panicked => "panicked",
        }
    }
}

/// Who called: public ids only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalFacts {
    pub tenant: String,
    pub key_id: String,
}

/// What the gateway learnt about the image. Never the image.
#[derive(Clone, PartialEq, Eq)]
pub struct ImageFacts {
    /// `jpeg`, `png`, `webp` or `gif`.
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
    /// Decoded image size in bytes.
    pub size: usize,
    /// SHA-256 of the decoded image bytes.
    pub sha256: [u8; 32],
    /// Whether the client's encoding had to be rewritten for the vendor.
    pub rewritten: bool,
}

impl ImageFacts {
    /// The digest as 64 lowercase hex characters.
    pub fn sha256_hex(&self) -> String {
        crate::hex::encode(&self.sha256)
    }
}

impl fmt::Debug for ImageFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageFacts")
            .field("format", &self.format)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("size", &self.size)
            .field("sha256", &self.sha256_hex())
            .field("rewritten", &self.rewritten)
            .finish()
    }
}

/// The vendor call: what it answered, or only how long it took when it
/// failed (timeout, reset, garbage).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpstreamFacts {
    /// The vendor's HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    pub transaction_id: Option<String>,
    pub score: Option<f64>,
    /// The vendor's own `errorCode` (e.g. 1017).
    pub error_code: Option<i64>,
    pub latency: Duration,
    /// Body bytes sent to the vendor, and received from it (0 when no
    /// answer came).
    pub sent_bytes: usize,
    pub received_bytes: usize,
}

/// What liveness-aware protection did with the request. Ids, kinds and
/// counts only: never the image, its metadata or a hash of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProtectionFacts {
    /// The earlier transactionId this image repeats (flagged or refused).
    pub replay_of: Option<String>,
    /// `exact` (same bytes) or `perceptual`, with the Hamming distance.
    pub replay_match: Option<&'static str>,
    pub replay_distance: Option<u32>,
    /// Which replay checks ran: `perceptual` (exact and perceptual),
    /// `exact` (the image has no perceptual hash), `skipped` (the
    /// fingerprint had no decode slot in time or passed its deadline: the
    /// exact check only). `None` when replay detection is off.
    pub replay_check: Option<&'static str>,
    /// Kinds of metadata removed before forwarding (`exif`, `xmp`, ...);
    /// empty when nothing was removed.
    pub metadata_removed: Vec<&'static str>,
    /// The score decision (`pass`, `fail`, `review`), when the tenant sets
    /// a threshold and the vendor answered a score.
    pub decision: Option<&'static str>,
    /// The answer was a stored one, served for a repeated
    /// `Idempotency-Key` without a vendor call.
    pub idempotent_replay: bool,
    /// The transactionId of the stored answer served again.
    pub stored_transaction_id: Option<String>,
    /// A protection store could not be consulted and its check was skipped
    /// (fail mode `open` or `local`).
    pub store_error: bool,
}

/// What the innermost service learnt from the vendor's answer, in the
/// response's extensions for the layers around it (the body is shared,
/// not copied).
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardedAnswer {
    pub body: bytes::Bytes,
    pub transaction_id: Option<String>,
    pub score: Option<f64>,
}

/// The complete record of one liveness request, handed to the sink once.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeRecord {
    pub request_id: String,
    pub started_at: SystemTime,
    pub principal: Option<PrincipalFacts>,
    pub image: Option<ImageFacts>,
    pub upstream: Option<UpstreamFacts>,
    /// The error the gateway answered itself, if any.
    pub error: Option<ErrorKind>,
    /// For 5xx only: what went wrong, for operators (never client input).
    pub cause: Option<String>,
    /// The HTTP status sent; `None` when the client went away first.
    pub status: Option<u16>,
    pub outcome: Outcome,
    /// From the first layer of the route to the end.
    pub total: Duration,
    /// The W3C trace id (32 lowercase hex) of the request's trace, when
    /// tracing is on.
    pub trace_id: Option<String>,
    /// Whether a sink reserved a place for this record when the request
    /// entered (the audit trail does, so that no record it admitted can be
    /// lost); a sink that reserves releases the place when it has written.
    pub reserved: bool,
    /// What liveness-aware protection did, when the request reached it.
    pub protection: Option<ProtectionFacts>,
}

/// A handle on the record of one request under construction: cheap to
/// clone, shared by the layers of that request through its extensions.
#[derive(Clone)]
pub struct Exchange {
    inner: Arc<Shared>,
}

struct Shared {
    started: Instant,
    draft: Mutex<Draft>,
}

struct Draft {
    /// Headers every response of this request carries, whoever answers it
    /// (e.g. the rate-limit state).
    response_headers: http::HeaderMap,
    request_id: String,
    started_at: SystemTime,
    principal: Option<PrincipalFacts>,
    image: Option<ImageFacts>,
    upstream: Option<UpstreamFacts>,
    trace_id: Option<String>,
    reserved: bool,
    protection: Option<ProtectionFacts>,
}

impl Exchange {
    pub(crate) fn new(request_id: &str, started_at: SystemTime) -> Self {
        Self {
            inner: Arc::new(Shared {
                started: Instant::now(),
                draft: Mutex::new(Draft {
                    response_headers: http::HeaderMap::new(),
                    request_id: request_id.to_owned(),
                    started_at,
                    principal: None,
                    image: None,
                    upstream: None,
                    trace_id: None,
                    reserved: false,
                    protection: None,
                }),
            }),
        }
    }

    /// The exchange of a request, if the route has the exchange layer.
    pub fn of<B>(req: &http::Request<B>) -> Option<&Exchange> {
        req.extensions().get::<Exchange>()
    }

    pub fn set_principal(&self, tenant: &str, key_id: &str) {
        self.draft().principal = Some(PrincipalFacts {
            tenant: tenant.to_owned(),
            key_id: key_id.to_owned(),
        });
    }

    pub fn set_image(&self, facts: ImageFacts) {
        self.draft().image = Some(facts);
    }

    pub fn set_upstream(&self, facts: UpstreamFacts) {
        self.draft().upstream = Some(facts);
    }

    /// Changes the protection facts (created empty on first use).
    pub fn update_protection(&self, change: impl FnOnce(&mut ProtectionFacts)) {
        change(self.draft().protection.get_or_insert_with(Default::default));
    }

    /// What the protection layer has noted so far.
    pub fn protection(&self) -> Option<ProtectionFacts> {
        self.draft().protection.clone()
    }

    /// An exchange no [`ExchangeLayer`](crate::exchange::ExchangeLayer)
    /// will complete: for the tests of the layers that write to it.
    #[doc(hidden)]
    pub fn detached(request_id: &str) -> Self {
        Self::new(request_id, SystemTime::now())
    }

    pub fn set_trace_id(&self, trace_id: String) {
        self.draft().trace_id = Some(trace_id);
    }

    /// Marks the record as having a place reserved in a sink (see
    /// [`ExchangeRecord::reserved`]).
    pub fn set_reserved(&self) {
        self.draft().reserved = true;
    }

    /// A header the response will carry whether the vendor answered or the
    /// gateway refused (set by a layer that knows it before the outcome,
    /// such as the rate limiter).
    pub fn add_response_header(&self, name: http::HeaderName, value: http::HeaderValue) {
        self.draft().response_headers.insert(name, value);
    }

    /// A header added with [`Self::add_response_header`], as text.
    pub fn response_header(&self, name: &str) -> Option<String> {
        let d = self.draft();
        d.response_headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub(crate) fn take_response_headers(&self) -> http::HeaderMap {
        std::mem::take(&mut self.draft().response_headers)
    }

    pub(crate) fn complete(
        &self,
        outcome: Outcome,
        status: Option<u16>,
        error: Option<ErrorKind>,
        cause: Option<String>,
    ) -> ExchangeRecord {
        let total = self.inner.started.elapsed();
        let mut d = self.draft();
        ExchangeRecord {
            request_id: std::mem::take(&mut d.request_id),
            started_at: d.started_at,
            principal: d.principal.take(),
            image: d.image.take(),
            upstream: d.upstream.take(),
            error,
            cause,
            status,
            outcome,
            total,
            trace_id: d.trace_id.take(),
            reserved: d.reserved,
            protection: d.protection.take(),
        }
    }

    fn draft(&self) -> std::sync::MutexGuard<'_, Draft> {
        // Every write is a whole-field assignment, so a panic elsewhere
        // cannot leave a draft half-written: poison is safe to ignore, and
        // must be, since the record of a panicked request is still due.
        self.inner
            .draft
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange").finish_non_exhaustive()
    }
}
