//! `[log]`: how application logs are written (trace export is configured
//! by the standard `OTEL_*` variables instead).

use serde::{Deserialize, Serialize};

use crate::LogFormat;

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `livegate=debug,info`; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}
