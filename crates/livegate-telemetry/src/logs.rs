//! OTLP log export for a caller that must know each batch arrived: the
//! audit trail's `otlp` sink.
//!
//! The SDK's batch log processor drops records when its queue is full and
//! never says whether an export succeeded, which an audit trail cannot
//! accept. [`OtlpLogs`] instead hands one batch to the OTLP exporter and
//! returns its result, so the caller keeps the batch and retries until the
//! collector took it. Endpoint, headers, timeout: the standard
//! `OTEL_EXPORTER_OTLP_[LOGS_]*` variables, read by the exporter, as for
//! traces; the transport from `OTEL_EXPORTER_OTLP_[LOGS_]PROTOCOL`.

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::{InstrumentationScope, Key};
use opentelemetry_otlp::{LogExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::logs::{
    LogBatch, LogExporter as _, SdkLogRecord, SdkLogger, SdkLoggerProvider,
};

use crate::config::{self, Protocol};
use crate::export::{OnRuntime, resource};

/// How serious a record is (its OTLP severity number and text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    List(Vec<Value>),
}

/// One log record to export.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub time: SystemTime,
    pub level: Level,
    /// The OTLP `event_name`.
    pub event: &'static str,
    pub body: String,
    pub attributes: Vec<(String, Value)>,
}

/// An OTLP log exporter; see the [module docs](self).
pub struct OtlpLogs {
    exporter: LogExporter,
    logger: SdkLogger,
    scope: InstrumentationScope,
    /// Only makes the logger's records; has no processor.
    _provider: SdkLoggerProvider,
}

impl std::fmt::Debug for OtlpLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpLogs").finish_non_exhaustive()
    }
}

impl OtlpLogs {
    /// An exporter configured by the process environment, with records in
    /// the instrumentation scope `scope`. Must be called within a Tokio
    /// runtime, which then carries its I/O. Fails when no endpoint is set
    /// (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`)
    /// or a setting is wrong.
    pub fn from_env(scope: &'static str) -> Result<Self, String> {
        Self::with_env(scope, &|name| std::env::var(name).ok())
    }

    fn with_env(scope: &'static str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "OTLP logs need a Tokio runtime".to_owned())?;
        let mut exporter = match config::logs_protocol(env)? {
            Protocol::Grpc => LogExporter::builder().with_tonic().build(),
            Protocol::HttpProtobuf => LogExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(OnRuntime::new(runtime, config::http_timeout(env, "LOGS"))?)
                .build(),
        }
        .map_err(|e| format!("OTLP log exporter: {e}"))?;
        exporter.set_resource(&resource(env));
        let provider = SdkLoggerProvider::builder().build();
        let scope = InstrumentationScope::builder(scope).build();
        Ok(Self {
            exporter,
            logger: provider.logger_with_scope(scope.clone()),
            scope,
            _provider: provider,
        })
    }

    /// Sends `records` as one export request; `Ok` once the collector
    /// accepted it. The error says why not, never what a record holds.
    pub async fn export(&self, records: &[Record]) -> Result<(), String> {
        let sdk: Vec<SdkLogRecord> = records.iter().map(|r| self.sdk_record(r)).collect();
        let pairs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            sdk.iter().map(|r| (r, &self.scope)).collect();
        self.exporter
            .export(LogBatch::new(&pairs))
            .await
            .map_err(|e| e.to_string())
    }

    fn sdk_record(&self, r: &Record) -> SdkLogRecord {
        let mut out = self.logger.create_log_record();
        out.set_timestamp(r.time);
        out.set_observed_timestamp(SystemTime::now());
        out.set_event_name(r.event);
        let (number, text) = match r.level {
            Level::Info => (Severity::Info, "INFO"),
            Level::Warn => (Severity::Warn, "WARN"),
            Level::Error => (Severity::Error, "ERROR"),
        };
        out.set_severity_number(number);
        out.set_severity_text(text);
        out.set_body(AnyValue::String(r.body.clone().into()));
        for (k, v) in &r.attributes {
            out.add_attribute(Key::new(Cow::Owned(k.clone())), any(v));
        }
        out
    }
}

fn any(v: &Value) -> AnyValue {
    match v {
        Value::Str(s) => AnyValue::String(s.clone().into()),
        Value::Int(i) => AnyValue::Int(*i),
        Value::Double(d) => AnyValue::Double(*d),
        Value::Bool(b) => AnyValue::Boolean(*b),
        Value::List(l) => AnyValue::ListAny(Box::new(l.iter().map(any).collect())),
    }
}
