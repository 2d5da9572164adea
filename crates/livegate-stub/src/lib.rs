//! The vendor simulator: a strict stand-in for the third-party face-liveness
//! API, for development, tests, benchmarks and the embedded default of
//! `livegate serve`.
//!
//! It owns one HTTP server (HTTP/1.1 and h2c on the same port) that answers
//! like the vendor does, plus the knobs a test needs to make it misbehave:
//! latency, jitter and [`Faults`]. It does not own anything of the gateway
//! (no tenant keys, no normalization): it is deliberately *less* forgiving
//! than the gateway, so a gateway that forwards anything but canonical
//! base64 of a real image fails its tests here first.
//!
//! # Routes
//! - `POST /modules/liveness` with `x-api-key` and `{"faceImage": "<base64>"}`:
//!   - 200 `{"apiType":"id_live_face","result":{"liveness_score":N},"transactionId":"…"}`;
//!     `N` is [`liveness_score`] of the decoded bytes (so a test can predict
//!     it), the transactionId is 13 fresh characters from `[a-z0-9]`.
//!   - 401 `{"errorCode":1001,"message":"Invalid API key"}` for a missing or
//!     wrong key. The vendor documents no code for this; 1001 is the
//!     simulator's own choice, so nothing should depend on it.
//!   - 400 1016 `faceImage is required` when the field is missing, `null` or
//!     `""`, and also when the body is not JSON or not a JSON object: the
//!     vendor reads the field out of whatever it parsed, so an unparseable
//!     body looks to it like one without the field.
//!   - 400 1017 `Fail to analyze face` when `faceImage` is not a string, is
//!     not strict standard padded base64 (a `data:` prefix, whitespace, the
//!     URL-safe alphabet, missing padding or non-zero trailing bits all
//!     fail), or decodes to bytes that are not a JPEG, PNG or WebP image.
//!   - 413 `{"message":"request body too large"}` over [`BODY_LIMIT`].
//!   - 405 for any other method.
//! - `GET /livez`: 200.
//! - anything else: 404 `{"message":"not found"}`.
//!
//! The content type of the request is not checked, as the vendor does not.
//!
//! # Order of a liveness call
//! Record the headers and count the call, read the body (413 over the limit)
//! and record it, wait `latency` + jitter, then the infrastructure faults in
//! [`Faults`] order (reset, timeout, 503, malformed: they model the vendor's
//! load balancer and so come before its key check), then the key (401), the
//! body (1016/1017) and last the `error_rate` fault, which turns an otherwise
//! good answer into 1017.
//!
//! # Secrets and images
//! Nothing here logs a header value, the body, the base64 or the image; the
//! vendor key is kept only as its SHA-256 digest and `StubConfig`'s `Debug`
//! redacts it. The recorded headers and body are kept in memory for tests
//! only, and only the last ones.

mod server;
mod settings;
mod vendor;

use std::fmt;
use std::time::Duration;

pub use server::{StubHandle, serve, spawn};
pub use settings::SimulatorSettings;
pub use vendor::liveness_score;

/// Largest request body the simulator reads; larger ones get HTTP 413.
///
/// Above the gateway's 10 MiB default so that the gateway's own limit is the
/// one a client meets, while an unbounded upload still cannot exhaust memory.
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// How the simulator behaves.
#[derive(Clone)]
pub struct StubConfig {
    /// The vendor key callers must present in `x-api-key`.
    pub api_key: String,
    /// Added to every liveness call, after the body is read.
    pub latency: Duration,
    /// Up to this much more, uniformly at random, on every liveness call.
    pub jitter: Duration,
    /// Misbehaviour to inject.
    pub faults: Faults,
    /// Keep the last request's headers and body for
    /// [`StubHandle::last_headers`] / [`StubHandle::last_body`]. Off by
    /// default: the body is a face image, which only a test may hold on to.
    pub record: bool,
}

impl StubConfig {
    /// A well-behaved simulator: no latency, no jitter, no faults.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            faults: Faults::default(),
            record: false,
        }
    }

    /// The same, keeping the last request for inspection (tests).
    #[must_use]
    pub fn recording(mut self) -> Self {
        self.record = true;
        self
    }
}

// Hand-written so that logging a config can never print the vendor key.
impl fmt::Debug for StubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StubConfig")
            .field("api_key", &"<redacted>")
            .field("latency", &self.latency)
            .field("jitter", &self.jitter)
            .field("faults", &self.faults)
            .field("record", &self.record)
            .finish()
    }
}

/// Faults injected into liveness calls.
///
/// Each rate is a probability rolled independently per request, in field
/// order; the first that fires decides the answer. `0.0` (or NaN) never
/// fires, `1.0` (or more) always does.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Close the connection without any response. Over HTTP/1.1 the
    /// connection is closed; over HTTP/2 the stream is reset.
    pub reset_rate: f64,
    /// Hang for [`Faults::hang`] before answering normally. A hang in
    /// progress when the server shuts down is abandoned (the connection is
    /// closed), so a test's shutdown never waits for it.
    pub timeout_rate: f64,
    /// HTTP 503 `{"message":"service unavailable"}`.
    pub server_error_rate: f64,
    /// HTTP 200 with `content-type: application/json` and a truncated JSON
    /// body.
    pub malformed_rate: f64,
    /// HTTP 400 1017 `Fail to analyze face` even for a good image (a bad
    /// request still gets its own error).
    pub error_rate: f64,
    /// How long a timeout fault hangs.
    pub hang: Duration,
}

/// Default hang of a timeout fault: longer than any sane client timeout.
pub const DEFAULT_HANG: Duration = Duration::from_secs(60);

// Not derived: a derived `hang` of zero would make the timeout fault a no-op.
impl Default for Faults {
    fn default() -> Self {
        Self {
            reset_rate: 0.0,
            timeout_rate: 0.0,
            server_error_rate: 0.0,
            malformed_rate: 0.0,
            error_rate: 0.0,
            hang: DEFAULT_HANG,
        }
    }
}
