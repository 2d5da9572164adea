use std::path::PathBuf;
use std::time::Duration;

use livegate_core::serde_duration::{hours, millis};
use serde::{Deserialize, Serialize};

/// Where audit lines go (`audit.sink`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// One JSON line per record on stdout (application logs go to stderr).
    #[default]
    Stdout,
    /// Appended to [`AuditSettings::path`], rotated by size.
    File,
    /// A Redis stream, with a lookup key per transactionId.
    Redis,
}

/// How the audit trail is written; see the [crate docs](crate). The
/// `[audit]` section: the keys are the fields' names, or the one in
/// `rename` with its unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    pub sink: SinkKind,
    /// The file of [`SinkKind::File`]; created with mode 0600.
    pub path: Option<PathBuf>,
    /// A file is rotated before the line that would take it past this size.
    pub max_file_bytes: u64,
    /// Rotated files kept besides the live one (`path.1` newest …
    /// `path.<max_files>` oldest); the oldest is deleted at each rotation.
    pub max_files: u32,
    /// The Redis stream; lookup keys are `<stream_key>:tx:<transactionId>`.
    /// On a Redis Cluster it needs a hash tag (`{livegate:audit}`), so a
    /// record's entry and lookup key are written in one transaction.
    #[serde(rename = "stream")]
    pub stream_key: String,
    /// `XADD … MAXLEN ~`: the stream is trimmed to about this many entries.
    pub stream_max_len: u64,
    /// How long a record stays findable by its transactionId.
    #[serde(rename = "lookup_retention_hours", with = "hours")]
    pub lookup_ttl: Duration,
    /// Places: records admitted but not yet written (in flight or queued).
    pub capacity: usize,
    /// How long a request waits for a place before it is refused.
    #[serde(rename = "max_wait_ms", with = "millis")]
    pub max_wait: Duration,
    /// Names this process in every line, so per-process `seq` gaps can be
    /// told apart across gateway instances.
    /// Set by the gateway at start-up, never configured.
    #[serde(skip)]
    pub instance_id: String,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            sink: SinkKind::Stdout,
            path: None,
            max_file_bytes: 100 << 20,
            max_files: 10,
            stream_key: "livegate:{audit}".to_owned(),
            stream_max_len: 1_000_000,
            lookup_ttl: Duration::from_secs(30 * 24 * 3600),
            capacity: 10_000,
            max_wait: Duration::from_secs(1),
            instance_id: String::new(),
        }
    }
}
