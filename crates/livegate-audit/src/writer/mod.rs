//! The writers: with several sinks, the dispatcher takes queued records in
//! order, numbers them and hands each numbered batch to every sink's
//! writer; with one sink (the usual case) its writer takes and numbers the
//! records itself, so no batch changes threads twice (a hand-over per batch
//! cost ~8 % of a request's CPU at 3,000 requests a second). Each writer
//! writes in order, and a record's place is given back only once every
//! sink has written it. A failed write is retried, with backoff, until it
//! succeeds: a record is never dropped.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use livegate_core::exchange::ExchangeRecord;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::record::{to_json_line, valid_transaction_id};
use crate::state::State;

pub(crate) mod file;
pub(crate) mod otlp;
pub(crate) mod redis;

/// Records numbered at once, at most.
const DISPATCH_BATCH: usize = 1024;

/// A numbered batch, shared by every sink's writer.
pub(crate) type Batch = Arc<Vec<Line>>;

/// The dispatcher thread's loop: number what is queued, hand it to every
/// writer. Ends when every sender is gone; the writers end after it.
pub(crate) fn dispatch(
    mut rx: UnboundedReceiver<ExchangeRecord>,
    mut numbering: Numbering,
    writers: Vec<UnboundedSender<Batch>>,
) {
    while let Some(first) = rx.blocking_recv() {
        let lines: Batch = Arc::new(numbering.lines(batch(first, &mut rx, DISPATCH_BATCH)));
        for w in &writers {
            if w.send(lines.clone()).is_err() {
                // Only if a writer panicked: its records keep their places,
                // so the gateway refuses requests (50305) instead.
                tracing::error!(target: "livegate::audit", "an audit writer has stopped");
            }
        }
    }
}

/// Where a writer takes its numbered batches from.
pub(crate) enum Source {
    /// The dispatcher's batches (several sinks).
    Dispatched(UnboundedReceiver<Batch>),
    /// The queue of records itself, numbered here (one sink).
    Direct(UnboundedReceiver<ExchangeRecord>, Numbering),
}

impl Source {
    /// The next batch, waiting for it in a blocking thread; `None` once
    /// every sender is gone and the queue is empty.
    pub(crate) fn blocking_recv(&mut self) -> Option<Batch> {
        match self {
            Self::Dispatched(rx) => rx.blocking_recv(),
            Self::Direct(rx, numbering) => {
                let first = rx.blocking_recv()?;
                Some(Arc::new(numbering.lines(batch(first, rx, DISPATCH_BATCH))))
            }
        }
    }

    /// The next batch, waiting for it in a task.
    pub(crate) async fn recv(&mut self) -> Option<Batch> {
        match self {
            Self::Dispatched(rx) => rx.recv().await,
            Self::Direct(rx, numbering) => {
                let first = rx.recv().await?;
                Some(Arc::new(numbering.lines(batch(first, rx, DISPATCH_BATCH))))
            }
        }
    }

    /// A batch already queued, if any.
    fn try_recv(&mut self) -> Option<Batch> {
        match self {
            Self::Dispatched(rx) => rx.try_recv().ok(),
            Self::Direct(rx, numbering) => {
                let first = rx.try_recv().ok()?;
                Some(Arc::new(numbering.lines(batch(first, rx, DISPATCH_BATCH))))
            }
        }
    }
}

/// `first` and the batches queued behind it, up to about `max` lines.
pub(crate) fn more(first: Batch, src: &mut Source, max: usize) -> Vec<Batch> {
    let mut n = first.len();
    let mut out = vec![first];
    while n < max {
        match src.try_recv() {
            Some(b) => {
                n += b.len();
                out.push(b);
            }
            None => break,
        }
    }
    out
}

/// Which sinks have written how far; frees places once all have.
pub(crate) struct Progress {
    state: Arc<State>,
    inner: Mutex<Written>,
}

struct Written {
    /// Records written, per sink.
    by_sink: Vec<u64>,
    /// Places given back (the least of `by_sink`).
    freed: u64,
    failing: Vec<bool>,
}

impl Progress {
    pub(crate) fn new(state: Arc<State>, sinks: usize) -> Arc<Self> {
        Arc::new(Self {
            state,
            inner: Mutex::new(Written {
                by_sink: vec![0; sinks],
                freed: 0,
                failing: vec![false; sinks],
            }),
        })
    }

    /// The handle of sink number `index` (named `name` in logs).
    pub(crate) fn report(self: &Arc<Self>, index: usize, name: &'static str) -> Report {
        Report {
            progress: self.clone(),
            index,
            name,
        }
    }
}

/// A writer's way to say what it wrote or why it could not.
pub(crate) struct Report {
    progress: Arc<Progress>,
    index: usize,
    name: &'static str,
}

impl Report {
    /// `n` more records are written by this sink.
    pub(crate) fn written(&self, n: usize) {
        let p = &self.progress;
        let mut w = p.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if std::mem::replace(&mut w.failing[self.index], false) {
            tracing::warn!(target: "livegate::audit", sink = self.name, "audit writes recovered");
        }
        w.by_sink[self.index] += n as u64;
        let least = w.by_sink.iter().copied().min().unwrap_or(0);
        let newly = least - w.freed;
        w.freed = least;
        p.state.set_failing(w.failing.iter().any(|f| *f));
        drop(w);
        if newly > 0 {
            p.state
                .written(usize::try_from(newly).unwrap_or(usize::MAX));
        }
    }

    /// A write failed; the records are kept and retried. Logged when the
    /// sink starts failing, not per attempt. `why` never holds a record.
    pub(crate) fn failed(&self, why: &str) {
        let p = &self.progress;
        p.state.write_error();
        let mut w = p.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !std::mem::replace(&mut w.failing[self.index], true) {
            tracing::error!(
                target: "livegate::audit",
                sink = self.name,
                error = why,
                "audit writes failing; records are kept and retried"
            );
        }
        p.state.set_failing(true);
    }
}

/// A record ready to write; its `seq` is fixed, so a retried line is the
/// same line.
pub(crate) struct Line {
    pub(crate) json: String,
    /// When the request started (the line's `time`).
    pub(crate) time: SystemTime,
    /// The record's outcome (`forwarded`, `rejected`, …).
    pub(crate) outcome: &'static str,
    /// The transactionId when it may be part of a key.
    pub(crate) transaction_id: Option<String>,
}

/// Numbers records `1, 2, …` in the order they are written.
pub(crate) struct Numbering {
    seq: u64,
    instance_id: String,
}

impl Numbering {
    pub(crate) fn new(instance_id: String) -> Self {
        Self {
            seq: 0,
            instance_id,
        }
    }

    pub(crate) fn lines(&mut self, batch: Vec<ExchangeRecord>) -> Vec<Line> {
        batch
            .into_iter()
            .map(|r| {
                self.seq += 1;
                Line {
                    json: to_json_line(self.seq, &self.instance_id, &r),
                    time: r.started_at,
                    outcome: r.outcome.as_str(),
                    transaction_id: r
                        .upstream
                        .and_then(|u| u.transaction_id)
                        .filter(|t| valid_transaction_id(t)),
                }
            })
            .collect()
    }
}

/// `first` and whatever else is queued, up to `max` records.
pub(crate) fn batch(
    first: ExchangeRecord,
    rx: &mut UnboundedReceiver<ExchangeRecord>,
    max: usize,
) -> Vec<ExchangeRecord> {
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
    batch
}
