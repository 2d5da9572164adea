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
    /// OTLP log records (the line as body, its fields as attributes) to
    /// the collector of `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    Otlp,
}

impl SinkKind {
    /// `stdout`, `file`, `redis` or `otlp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::File => "file",
            Self::Redis => "redis",
            Self::Otlp => "otlp",
        }
    }
}

/// The sinks every record is written to: `audit.sink = "file"`, or a list
/// such as `["file", "otlp"]`. A record's place is freed once every sink
/// has written it, so one stuck sink makes the gateway refuse requests
/// (503 50305) rather than any sink lose a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "OneOrMany", into = "OneOrMany")]
pub struct Sinks(Vec<SinkKind>);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(SinkKind),
    Many(Vec<SinkKind>),
}

impl From<OneOrMany> for Sinks {
    fn from(v: OneOrMany) -> Self {
        match v {
            OneOrMany::One(k) => Self(vec![k]),
            OneOrMany::Many(ks) => Self(ks),
        }
    }
}

impl From<Sinks> for OneOrMany {
    fn from(s: Sinks) -> Self {
        match s.0.as_slice() {
            [one] => Self::One(*one),
            _ => Self::Many(s.0),
        }
    }
}

impl Default for Sinks {
    fn default() -> Self {
        Self(vec![SinkKind::Stdout])
    }
}

impl From<SinkKind> for Sinks {
    fn from(k: SinkKind) -> Self {
        Self(vec![k])
    }
}

impl From<Vec<SinkKind>> for Sinks {
    fn from(ks: Vec<SinkKind>) -> Self {
        Self(ks)
    }
}

impl Sinks {
    pub fn contains(&self, kind: SinkKind) -> bool {
        self.0.contains(&kind)
    }

    pub fn kinds(&self) -> &[SinkKind] {
        &self.0
    }

    /// What is wrong with the list: empty, or a sink named twice.
    pub fn problem(&self) -> Option<String> {
        if self.0.is_empty() {
            return Some("audit.sink must name at least one sink".into());
        }
        for (i, k) in self.0.iter().enumerate() {
            if self.0[..i].contains(k) {
                return Some(format!("audit.sink names {} twice", k.as_str()));
            }
        }
        None
    }

    /// `file`, or `file+otlp` for several.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// How the audit trail is written; see the [crate docs](crate). The
/// `[audit]` section: the keys are the fields' names, or the one in
/// `rename` with its unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Every sink each record is written to (see [`Sinks`]).
    pub sink: Sinks,
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
            sink: Sinks::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Serialize)]
    struct Section {
        sink: Sinks,
    }

    #[test]
    fn one_sink_or_a_list() {
        let one: Section = serde_json::from_str(r#"{"sink":"otlp"}"#).unwrap();
        assert_eq!(one.sink, Sinks::from(SinkKind::Otlp));
        let two: Section = serde_json::from_str(r#"{"sink":["file","otlp"]}"#).unwrap();
        assert_eq!(two.sink.kinds(), [SinkKind::File, SinkKind::Otlp]);
        assert!(two.sink.contains(SinkKind::File) && !two.sink.contains(SinkKind::Redis));
        assert_eq!(two.sink.describe(), "file+otlp");
        // Written back in the shape it was given.
        assert_eq!(serde_json::to_string(&one).unwrap(), r#"{"sink":"otlp"}"#);
        assert_eq!(
            serde_json::to_string(&two).unwrap(),
            r#"{"sink":["file","otlp"]}"#
        );
        assert!(serde_json::from_str::<Section>(r#"{"sink":"kafka"}"#).is_err());
        assert!(Sinks::from(vec![]).problem().is_some());
        assert!(
            Sinks::from(vec![SinkKind::File, SinkKind::File])
                .problem()
                .is_some()
        );
        assert_eq!(two.sink.problem(), None);
    }
}
