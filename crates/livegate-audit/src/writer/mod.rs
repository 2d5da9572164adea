//! The writer: takes queued records in order, numbers them, writes them,
//! and gives their places back only once they are written. A failed write
//! is retried, with backoff, until it succeeds: a record is never dropped.

use livegate_core::exchange::ExchangeRecord;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::record::{to_json_line, valid_transaction_id};

pub(crate) mod file;
pub(crate) mod redis;

/// A record ready to write; its `seq` is fixed, so a retried line is the
/// same line.
pub(crate) struct Line {
    pub(crate) json: String,
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
