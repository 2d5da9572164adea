//! Whether, and how, to export traces: read from the standard `OTEL_*`
//! variables through a lookup function, so tests never touch the process
//! environment.

use std::time::Duration;

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// What `init` does about a signal's export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// No endpoint, or export switched off: no exporter, no OpenTelemetry layer.
    Off,
    /// Export with this transport.
    Export(Protocol),
    /// A setting is wrong: warn with this text and run without export.
    Invalid(String),
}

/// How metrics are exported, when they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetricsPlan {
    pub(crate) protocol: Protocol,
    pub(crate) interval: Duration,
    pub(crate) temporality: opentelemetry_sdk::metrics::Temporality,
}

/// The spec's default export interval.
const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(60);

/// A variable's value; per the OpenTelemetry spec an empty value means unset.
fn var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The first of `names` that is set.
fn first(env: &dyn Fn(&str) -> Option<String>, names: &[&str]) -> Option<(String, String)> {
    names
        .iter()
        .find_map(|n| var(env, n).map(|v| ((*n).to_owned(), v)))
}

pub(crate) fn plan(env: &dyn Fn(&str) -> Option<String>) -> Plan {
    if var(env, "OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Plan::Off;
    }
    if let Some(exporters) = var(env, "OTEL_TRACES_EXPORTER") {
        let names: Vec<String> = exporters
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect();
        if names.iter().any(|n| n == "none") {
            return Plan::Off;
        }
        if !names.iter().any(|n| n == "otlp") {
            return Plan::Invalid(format!(
                "OTEL_TRACES_EXPORTER={exporters}: only `otlp` (or `none`) is supported; traces are not exported"
            ));
        }
    }
    if first(
        env,
        &[
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ],
    )
    .is_none()
    {
        return Plan::Off;
    }
    match protocol(env, "TRACES") {
        Ok(p) => Plan::Export(p),
        Err(why) => Plan::Invalid(format!("{why}; traces are not exported")),
    }
}

/// The transport of a signal (`TRACES`, `METRICS`, `LOGS`): its own
/// variable, then the generic one, then the spec's default, http/protobuf.
pub(crate) fn protocol(
    env: &dyn Fn(&str) -> Option<String>,
    signal: &str,
) -> Result<Protocol, String> {
    let own = format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL");
    match first(env, &[own.as_str(), "OTEL_EXPORTER_OTLP_PROTOCOL"]) {
        None => Ok(Protocol::HttpProtobuf),
        Some((name, value)) => match value.to_ascii_lowercase().as_str() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            _ => Err(format!(
                "{name}={value}: expected `grpc` or `http/protobuf`"
            )),
        },
    }
}

/// Metrics go out over OTLP only when `OTEL_METRICS_EXPORTER` names
/// `otlp` (opt-in, unlike traces: a deployment that exports traces today
/// does not start pushing metrics on upgrade; `/metrics` serves them
/// either way). The endpoint is the metrics one, else the generic one,
/// else the exporter's default (`localhost:4318`, or `:4317` for gRPC).
pub(crate) fn metrics_plan(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<MetricsPlan>, String> {
    if var(env, "OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let Some(exporters) = var(env, "OTEL_METRICS_EXPORTER") else {
        return Ok(None);
    };
    let names: Vec<String> = exporters
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    if names.iter().any(|n| n == "none") || !names.iter().any(|n| n == "otlp") {
        // `prometheus` (or `none`): `/metrics` is always served.
        return if names.iter().all(|n| n == "none" || n == "prometheus") {
            Ok(None)
        } else {
            Err(format!(
                "OTEL_METRICS_EXPORTER={exporters}: only `otlp`, `prometheus` (always on: /metrics) or `none` are supported; metrics are not exported over OTLP"
            ))
        };
    }
    let protocol = protocol(env, "METRICS")
        .map_err(|why| format!("{why}; metrics are not exported over OTLP"))?;
    let interval = match var(env, "OTEL_METRIC_EXPORT_INTERVAL") {
        None => DEFAULT_METRIC_INTERVAL,
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                return Err(format!(
                    "OTEL_METRIC_EXPORT_INTERVAL={v}: expected milliseconds (> 0); metrics are not exported over OTLP"
                ));
            }
        },
    };
    let temporality = match var(env, "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") {
        None => opentelemetry_sdk::metrics::Temporality::Cumulative,
        Some(v) => v.parse().map_err(|_| {
            format!(
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE={v}: expected `cumulative`, `delta` or `lowmemory`; metrics are not exported over OTLP"
            )
        })?,
    };
    Ok(Some(MetricsPlan {
        protocol,
        interval,
        temporality,
    }))
}

/// The OTLP logs transport of the audit sink, which needs an endpoint: an
/// audit trail is never sent to a default address.
pub(crate) fn logs_protocol(env: &dyn Fn(&str) -> Option<String>) -> Result<Protocol, String> {
    if first(
        env,
        &[
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ],
    )
    .is_none()
    {
        return Err(
            "the otlp audit sink needs OTEL_EXPORTER_OTLP_LOGS_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT"
                .into(),
        );
    }
    protocol(env, "LOGS")
}

/// Whether the deployment names the service itself (the SDK reads both
/// variables); if not, livegate's default name applies.
pub(crate) fn service_name_given(env: &dyn Fn(&str) -> Option<String>) -> bool {
    var(env, "OTEL_SERVICE_NAME").is_some()
        || var(env, "OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attrs| {
            attrs
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .any(|(k, _)| k.trim() == "service.name")
        })
}

/// The per-request deadline for the HTTP transport's client, the same
/// variables and default (10 s) the exporter uses for its retry deadline.
pub(crate) fn http_timeout(env: &dyn Fn(&str) -> Option<String>, signal: &str) -> Duration {
    let own = format!("OTEL_EXPORTER_OTLP_{signal}_TIMEOUT");
    [own.as_str(), "OTEL_EXPORTER_OTLP_TIMEOUT"]
        .iter()
        .find_map(|n| var(env, n).and_then(|v| v.parse::<u64>().ok()))
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn nothing_set_means_off() {
        assert_eq!(plan(&env(&[])), Plan::Off);
        assert_eq!(
            plan(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])),
            Plan::Off
        );
        // A protocol alone configures nothing.
        assert_eq!(
            plan(&env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])),
            Plan::Off
        );
    }

    #[test]
    fn endpoint_defaults_to_http_protobuf() {
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        assert_eq!(plan(&e), Plan::Export(Protocol::HttpProtobuf));
        let e = env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces",
        )]);
        assert_eq!(plan(&e), Plan::Export(Protocol::HttpProtobuf));
    }

    #[test]
    fn traces_protocol_wins_over_generic() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "GRPC"),
        ]);
        assert_eq!(plan(&e), Plan::Export(Protocol::Grpc));
    }

    #[test]
    fn disabled_and_none_switch_export_off() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ]);
        assert_eq!(plan(&e), Plan::Off);
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]);
        assert_eq!(plan(&e), Plan::Off);
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "false"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
        ]);
        assert_eq!(plan(&e), Plan::Export(Protocol::HttpProtobuf));
    }

    #[test]
    fn unsupported_values_are_invalid_not_fatal() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ]);
        assert!(matches!(plan(&e), Plan::Invalid(m) if m.contains("http/json")));
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
        ]);
        assert!(matches!(plan(&e), Plan::Invalid(m) if m.contains("zipkin")));
    }

    #[test]
    fn service_name_from_either_variable() {
        assert!(!service_name_given(&env(&[])));
        assert!(service_name_given(&env(&[("OTEL_SERVICE_NAME", "gw")])));
        assert!(service_name_given(&env(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod, service.name=gw"
        )])));
        assert!(!service_name_given(&env(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.namespace=x"
        )])));
    }

    fn http_timeout_traces(e: &dyn Fn(&str) -> Option<String>) -> Duration {
        http_timeout(e, "TRACES")
    }

    #[test]
    fn metrics_need_the_exporter_variable_and_read_interval_and_temporality() {
        use opentelemetry_sdk::metrics::Temporality;
        // An endpoint alone exports traces, not metrics.
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        assert_eq!(metrics_plan(&e), Ok(None));
        let e = env(&[("OTEL_METRICS_EXPORTER", "prometheus")]);
        assert_eq!(metrics_plan(&e), Ok(None));
        let e = env(&[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "250"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
        ]);
        assert_eq!(
            metrics_plan(&e),
            Ok(Some(MetricsPlan {
                protocol: Protocol::Grpc,
                interval: Duration::from_millis(250),
                temporality: Temporality::Delta,
            }))
        );
        let e = env(&[("OTEL_METRICS_EXPORTER", "otlp")]);
        assert_eq!(
            metrics_plan(&e),
            Ok(Some(MetricsPlan {
                protocol: Protocol::HttpProtobuf,
                interval: Duration::from_secs(60),
                temporality: Temporality::Cumulative,
            }))
        );
        let e = env(&[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "soon"),
        ]);
        assert!(metrics_plan(&e).is_err());
        let e = env(&[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "sometimes",
            ),
        ]);
        assert!(metrics_plan(&e).is_err());
        let e = env(&[("OTEL_METRICS_EXPORTER", "statsd")]);
        assert!(metrics_plan(&e).is_err());
        let e = env(&[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert_eq!(metrics_plan(&e), Ok(None));
    }

    #[test]
    fn the_audit_logs_need_an_endpoint() {
        assert!(logs_protocol(&env(&[])).is_err());
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"),
        ]);
        assert_eq!(logs_protocol(&e), Ok(Protocol::Grpc));
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        assert_eq!(logs_protocol(&e), Ok(Protocol::HttpProtobuf));
    }

    #[test]
    fn http_timeout_per_signal_then_generic_then_default() {
        assert_eq!(http_timeout_traces(&env(&[])), Duration::from_secs(10));
        assert_eq!(
            http_timeout_traces(&env(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")])),
            Duration::from_millis(2500)
        );
        assert_eq!(
            http_timeout_traces(&env(&[
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
            ])),
            Duration::from_millis(700)
        );
    }
}
