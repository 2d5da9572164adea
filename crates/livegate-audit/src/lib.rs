//! The audit trail: exactly one redacted JSON line per liveness request,
//! numbered, never silently dropped.
//!
//! Owns the audit line ([`to_json_line`], keys [`KEYS`]: ids, outcome,
//! status, error code, score, latencies and the image's SHA-256, size and
//! format — never the image, a key or a header), the places that bound
//! what is admitted but not yet written, the [`AuditLayer`] that takes a
//! place per request, the [`ExchangeSink`] that queues each request's
//! record, and the writers (stdout, a size-rotated file, a Redis stream
//! with a lookup by transactionId, OTLP log records — one or several). Does not own the record itself (filled
//! by every layer, in `livegate_core::exchange`), the configuration file,
//! metrics (read [`Audit::stats`]) or the admin route (calls
//! [`Audit::lookup`]).
//!
//! # Reserve at entry, write at completion
//!
//! There are `capacity` places. The layer, directly inside the exchange
//! layer, takes one for each request — at once, or waiting up to
//! `max_wait` — and marks the request's exchange as reserved. A request
//! that gets no place is refused with [`AuditUnavailable`] (503, errorCode
//! 50305) and never reaches the vendor. When the request ends, the sink
//! queues its record on the place already held; the writer numbers
//! records (`seq` 1, 2, … per process, in the order written), writes and
//! flushes them (a file is also synced), and only then frees their places.
//! A write that fails is retried with backoff until it succeeds. So a
//! stuck or failing sink makes the gateway refuse new requests after at
//! most `capacity` of them, instead of losing records or memory.
//!
//! A record that arrives without a place (the request refused by this
//! layer, or one that never passed it) takes a free place if there is one
//! and is otherwise counted in [`AuditStats::unwritten_total`] and logged —
//! the sink never blocks the request's task.
//!
//! Redis and OTLP writes are at least once: when the answer to a written
//! batch is lost the batch is written again, and its repeated `seq`s show
//! it.
//!
//! # Several sinks
//!
//! `sink` may name several ([`Sinks`], e.g. file and otlp). One dispatcher
//! numbers each record once and hands it to every sink's writer; each
//! writes in `seq` order at its own pace, and a record's place is freed
//! only when every sink has written it. So one stuck sink (a collector
//! that is down) makes the gateway refuse requests (503 50305) after at
//! most `capacity` records, while the others keep writing; none loses a
//! record.
//!
//! # The otlp sink
//!
//! Records go out as OTLP log records (the audit line as body, its fields
//! as attributes, event name `livegate.audit`, severity by outcome:
//! `forwarded` INFO, `rejected`/`client_gone` WARN, `failed`/`panicked`
//! ERROR), to `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` over `OTEL_EXPORTER_OTLP_[LOGS_]PROTOCOL`
//! (one of them is required: an audit trail is never sent to a default
//! address). Each batch is one export request, retried until the collector
//! accepts it.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use livegate_audit::{Audit, AuditSettings, AuditUnavailable, SinkKind};
//! use livegate_core::SystemClock;
//! use livegate_core::exchange::ExchangeLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("audit.jsonl");
//! let audit = Audit::start(
//!     AuditSettings {
//!         sink: SinkKind::File.into(),
//!         path: Some(path.clone()),
//!         instance_id: "gw-1".into(),
//!         ..AuditSettings::default()
//!     },
//!     None,
//! )
//! .unwrap();
//! let svc = ServiceBuilder::new()
//!     // The audit sink gives back the places the audit layer takes.
//!     .layer(ExchangeLayer::new(audit.sink(), Arc::new(SystemClock)))
//!     .layer(audit.layer())
//!     .service(service_fn(|_req: Request<Bytes>| async {
//!         // The stack's error type: `From<AuditUnavailable>`.
//!         Ok::<_, AuditUnavailable>(Response::new(Bytes::from_static(b"{}")))
//!     }));
//! svc.oneshot(Request::new(Bytes::new())).await.unwrap();
//! // At shutdown: wait for what is queued.
//! assert!(audit.flush(tokio::time::Instant::now() + std::time::Duration::from_secs(10)).await);
//! let trail = std::fs::read_to_string(&path).unwrap();
//! assert!(trail.starts_with(r#"{"seq":1,"instanceId":"gw-1","#));
//! assert_eq!(audit.stats().written_total, 1);
//! # });
//! ```

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use livegate_core::exchange::{ExchangeRecord, ExchangeSink};
use livegate_redis::Backend;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::{self, UnboundedSender};

mod layer;
mod record;
mod settings;
mod state;
mod writer;

pub use layer::{AuditLayer, AuditService, AuditUnavailable, ResponseFuture};
pub use record::{KEYS, to_json_line, valid_transaction_id};
pub use settings::{AuditSettings, SinkKind, Sinks};

use state::State;
use writer::file::{Output, RotatingFile};
use writer::redis::RedisOutput;
use writer::{Numbering, Progress};

/// The Redis of [`SinkKind::Redis`]: a connection shared with nothing
/// else is best (the audit stream is write-heavy), and the bound on each
/// command (a batch of records is one command).
pub struct AuditRedis {
    pub backend: Backend,
    pub command_timeout: Duration,
}

/// Why the audit trail could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("audit capacity must be between 1 and {max}")]
    Capacity { max: usize },
    #[error("the file audit sink needs a path")]
    NoPath,
    #[error("audit file {0}: its directory does not exist")]
    NoDirectory(std::path::PathBuf),
    #[error("audit max_file_bytes and max_files must be at least 1")]
    Rotation,
    #[error("the redis audit sink needs a redis connection")]
    NoRedis,
    #[error(
        "on a Redis Cluster the audit stream key needs a hash tag such as \
         {{livegate:audit}}, so a record's entry and lookup key share a slot"
    )]
    ClusterKey,
    #[error("the {0} audit sink must be started within a Tokio runtime")]
    NoRuntime(&'static str),
    #[error("{0}")]
    Sinks(String),
    /// The OTLP exporter could not be set up (no endpoint, a bad setting).
    #[error("{0}")]
    Otlp(String),
    #[error("could not start the audit writer thread: {0}")]
    Thread(std::io::Error),
}

/// Why [`Audit::lookup`] has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Only the Redis sink keeps records findable by transactionId.
    #[error("the audit sink keeps no lookup by transactionId (only the redis sink does)")]
    Unsupported,
    /// Redis failed or timed out (never the URL or a password).
    #[error("audit lookup failed: {0}")]
    Unavailable(String),
}

/// The audit trail's counters, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditStats {
    pub capacity: usize,
    /// Records queued, waiting to be written.
    pub queued: u64,
    /// Places free now.
    pub places_free: usize,
    /// Places held by requests still in flight (`capacity - places_free -
    /// queued`; the three are read one after another, so approximate).
    pub reserved_in_flight: usize,
    pub written_total: u64,
    /// Requests that had to wait for a place.
    pub waits_total: u64,
    /// Requests refused with [`AuditUnavailable`].
    pub refused_total: u64,
    /// Records that found no place and were not written.
    pub unwritten_total: u64,
    /// Failed write attempts (each retried).
    pub write_errors_total: u64,
    /// Whether the last write attempt failed.
    pub failing: bool,
}

/// The running audit trail; cheap to clone. See the [crate docs](crate).
///
/// The writer ends when the last clone (and every layer and sink made from
/// it) is dropped and the queue is written.
#[derive(Clone)]
pub struct Audit {
    shared: Arc<Shared>,
}

/// One sink's output, set up before its writer starts.
enum Out {
    /// Stdout or a file: blocking I/O on a thread of its own.
    Blocking(Output),
    Redis(tokio::runtime::Handle, Arc<RedisOutput>),
    Otlp(
        tokio::runtime::Handle,
        Box<livegate_telemetry::logs::OtlpLogs>,
    ),
}

struct Shared {
    /// The sinks, for `/readyz`.
    sink: String,
    state: Arc<State>,
    tx: UnboundedSender<ExchangeRecord>,
    redis: Option<Arc<RedisOutput>>,
}

impl Audit {
    /// Checks the settings and starts the writer: a thread for stdout and
    /// file (blocking I/O; the file is opened on the first write), a Tokio
    /// task for Redis (so that sink must be started within a runtime).
    /// `redis` is used by [`SinkKind::Redis`] only.
    pub fn start(settings: AuditSettings, redis: Option<AuditRedis>) -> Result<Self, StartError> {
        if !(1..=Semaphore::MAX_PERMITS).contains(&settings.capacity) {
            return Err(StartError::Capacity {
                max: Semaphore::MAX_PERMITS,
            });
        }
        if let Some(why) = settings.sink.problem() {
            return Err(StartError::Sinks(why));
        }
        let state = Arc::new(State::new(settings.capacity, settings.max_wait));
        let (tx, rx) = mpsc::unbounded_channel();
        let numbering = Numbering::new(settings.instance_id.clone());
        let kinds = settings.sink.kinds();
        let progress = Progress::new(state.clone(), kinds.len());
        let mut lookup = None;
        let mut redis = redis;
        // Every output is set up before any writer starts, so a bad one
        // starts nothing.
        let mut outputs = Vec::new();
        for &kind in kinds {
            outputs.push(match kind {
                SinkKind::Stdout => Out::Blocking(Output::Stdout),
                SinkKind::File => Out::Blocking(Output::File(file_output(&settings)?)),
                SinkKind::Redis => {
                    let redis = redis.take().ok_or(StartError::NoRedis)?;
                    if matches!(redis.backend, Backend::Cluster(_))
                        && !has_hash_tag(&settings.stream_key)
                    {
                        return Err(StartError::ClusterKey);
                    }
                    let runtime = tokio::runtime::Handle::try_current()
                        .map_err(|_| StartError::NoRuntime("redis"))?;
                    let out = Arc::new(RedisOutput {
                        backend: redis.backend,
                        timeout: redis.command_timeout,
                        stream_key: settings.stream_key.clone(),
                        max_len: settings.stream_max_len,
                        ttl_secs: settings.lookup_ttl.as_secs().max(1),
                    });
                    lookup = Some(out.clone());
                    Out::Redis(runtime, out)
                }
                SinkKind::Otlp => {
                    let runtime = tokio::runtime::Handle::try_current()
                        .map_err(|_| StartError::NoRuntime("otlp"))?;
                    let logs = {
                        let _in = runtime.enter();
                        livegate_telemetry::logs::OtlpLogs::from_env("livegate.audit")
                            .map_err(StartError::Otlp)?
                    };
                    Out::Otlp(runtime, Box::new(logs))
                }
            });
        }
        // One sink: its writer numbers the records itself. Several: the
        // dispatcher numbers them once and hands every writer the batch.
        let mut input = Some((rx, numbering));
        let mut writers = Vec::new();
        for (i, (out, &kind)) in outputs.into_iter().zip(kinds).enumerate() {
            let wrx = match (kinds.len(), input.take()) {
                (1, Some((rx, numbering))) => writer::Source::Direct(rx, numbering),
                (_, kept) => {
                    input = kept;
                    let (wtx, wrx) = mpsc::unbounded_channel();
                    writers.push(wtx);
                    writer::Source::Dispatched(wrx)
                }
            };
            let report = progress.report(i, kind.as_str());
            match out {
                Out::Blocking(out) => {
                    std::thread::Builder::new()
                        .name(format!("livegate-audit-{}", kind.as_str()))
                        .spawn(move || writer::file::run(wrx, report, out))
                        .map_err(StartError::Thread)?;
                }
                Out::Redis(runtime, out) => {
                    runtime.spawn(writer::redis::run(wrx, report, out));
                }
                Out::Otlp(runtime, logs) => {
                    runtime.spawn(writer::otlp::run(wrx, report, *logs));
                }
            }
        }
        if let Some((rx, numbering)) = input {
            std::thread::Builder::new()
                .name("livegate-audit".into())
                .spawn(move || writer::dispatch(rx, numbering, writers))
                .map_err(StartError::Thread)?;
        }
        Ok(Self {
            shared: Arc::new(Shared {
                sink: settings.sink.describe(),
                state,
                tx,
                redis: lookup,
            }),
        })
    }

    /// `stdout`, `file`, `redis`, `otlp`, or several joined by `+`
    /// (`file+otlp`).
    pub fn sink_kind(&self) -> &str {
        &self.shared.sink
    }

    /// The layer taking a place per request; see the [crate docs](crate).
    pub fn layer(&self) -> AuditLayer {
        AuditLayer::new(self.shared.state.clone())
    }

    /// The sink queueing each record; one of the exchange layer's sinks.
    pub fn sink(&self) -> Arc<dyn ExchangeSink> {
        Arc::new(AuditSink {
            shared: self.shared.clone(),
        })
    }

    pub fn stats(&self) -> AuditStats {
        let s = &self.shared.state;
        let queued = s.queued.load(Ordering::Acquire);
        let places_free = s.places.available_permits();
        AuditStats {
            capacity: s.capacity,
            queued,
            places_free,
            reserved_in_flight: s
                .capacity
                .saturating_sub(places_free)
                .saturating_sub(usize::try_from(queued).unwrap_or(usize::MAX)),
            written_total: s.written.load(Ordering::Relaxed),
            waits_total: s.waits.load(Ordering::Relaxed),
            refused_total: s.refused.load(Ordering::Relaxed),
            unwritten_total: s.unwritten.load(Ordering::Relaxed),
            write_errors_total: s.write_errors.load(Ordering::Relaxed),
            failing: s.failing(),
        }
    }

    /// The audit line of the request the vendor numbered `transaction_id`,
    /// for `GET /admin/v1/audit/{transactionId}`: `Ok(None)` when there is
    /// none (unknown, expired after `lookup_ttl`, or not a valid
    /// transactionId — see [`valid_transaction_id`]).
    /// [`LookupError::Unsupported`] for the stdout and file sinks, which
    /// keep no index.
    pub async fn lookup(&self, transaction_id: &str) -> Result<Option<String>, LookupError> {
        let Some(redis) = &self.shared.redis else {
            return Err(LookupError::Unsupported);
        };
        if !valid_transaction_id(transaction_id) {
            return Ok(None);
        }
        redis
            .get(transaction_id)
            .await
            .map_err(|f| LookupError::Unavailable(f.describe("audit lookup")))
    }

    /// Waits until every queued record is written, or `deadline`; true
    /// when nothing is left queued. For shutdown, after the server has
    /// stopped taking requests.
    pub async fn flush(&self, deadline: tokio::time::Instant) -> bool {
        let state = &self.shared.state;
        loop {
            let progress = state.progress.notified();
            tokio::pin!(progress);
            // Registered before the check, so a batch written between the
            // check and the wait still wakes it.
            progress.as_mut().enable();
            if state.queued.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, progress).await.is_err() {
                return state.queued.load(Ordering::Acquire) == 0;
            }
        }
    }
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The audit trail's [`ExchangeSink`]; never blocks.
struct AuditSink {
    shared: Arc<Shared>,
}

impl ExchangeSink for AuditSink {
    fn emit(&self, record: ExchangeRecord) {
        let state = &self.shared.state;
        if !record.reserved {
            match state.places.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(_) => return state.unwritten("no audit place free"),
            }
        }
        state.queued.fetch_add(1, Ordering::AcqRel);
        if self.shared.tx.send(record).is_err() {
            // Only if the writer is gone (it panicked).
            state.queued.fetch_sub(1, Ordering::AcqRel);
            state.places.add_permits(1);
            return state.unwritten("the audit writer has stopped");
        }
        state.accepted();
    }
}

fn file_output(settings: &AuditSettings) -> Result<RotatingFile, StartError> {
    let path = settings.path.clone().ok_or(StartError::NoPath)?;
    if settings.max_file_bytes == 0 || settings.max_files == 0 {
        return Err(StartError::Rotation);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(StartError::NoDirectory(path));
    }
    Ok(RotatingFile::new(
        path,
        settings.max_file_bytes,
        settings.max_files,
    ))
}

/// Whether a Redis Cluster hashes `key` by a `{…}` part of it.
fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|len| len > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags() {
        assert!(has_hash_tag("{livegate:audit}"));
        assert!(has_hash_tag("audit:{gw}"));
        assert!(!has_hash_tag("livegate:audit"));
        assert!(!has_hash_tag("a{}b"));
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = |s: AuditSettings| Audit::start(s, None).unwrap_err();
        assert!(matches!(
            bad(AuditSettings {
                capacity: 0,
                ..AuditSettings::default()
            }),
            StartError::Capacity { .. }
        ));
        assert!(matches!(
            bad(AuditSettings {
                sink: SinkKind::File.into(),
                ..AuditSettings::default()
            }),
            StartError::NoPath
        ));
        assert!(matches!(
            bad(AuditSettings {
                sink: SinkKind::File.into(),
                path: Some("/nonexistent-dir-livegate/audit.jsonl".into()),
                ..AuditSettings::default()
            }),
            StartError::NoDirectory(_)
        ));
        assert!(matches!(
            bad(AuditSettings {
                sink: SinkKind::Redis.into(),
                ..AuditSettings::default()
            }),
            StartError::NoRedis
        ));
    }
}
