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

/// What `init` does about trace export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// No endpoint, or export switched off: no exporter, no OpenTelemetry layer.
    Off,
    /// Export with this transport.
    Export(Protocol),
    /// A setting is wrong: warn with this text and run without export.
    Invalid(String),
}

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
    match first(
        env,
        &[
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ],
    ) {
        // The spec's default transport.
        None => Plan::Export(Protocol::HttpProtobuf),
        Some((name, value)) => match value.to_ascii_lowercase().as_str() {
            "grpc" => Plan::Export(Protocol::Grpc),
            "http/protobuf" => Plan::Export(Protocol::HttpProtobuf),
            _ => Plan::Invalid(format!(
                "{name}={value}: expected `grpc` or `http/protobuf`; traces are not exported"
            )),
        },
    }
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
pub(crate) fn http_timeout(env: &dyn Fn(&str) -> Option<String>) -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
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

    #[test]
    fn http_timeout_per_signal_then_generic_then_default() {
        assert_eq!(http_timeout(&env(&[])), Duration::from_secs(10));
        assert_eq!(
            http_timeout(&env(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")])),
            Duration::from_millis(2500)
        );
        assert_eq!(
            http_timeout(&env(&[
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
            ])),
            Duration::from_millis(700)
        );
    }
}
