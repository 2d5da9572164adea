//! Trace export end to end, over real sockets: each scenario runs `init` in
//! a fresh process (this test binary re-run with one `child_*` test
//! selected and its `OTEL_*` environment set), exporting to an in-process
//! [`OtlpReceiver`]. A process gets one global subscriber, and the
//! environment is only ever set on the child's command line.
//!
//! The children set `OTEL_BSP_SCHEDULE_DELAY` to ten minutes, so a span
//! that has arrived by the time the child exits was sent by the guard's
//! flush on shutdown or drop.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use livegate_telemetry::testkit::{OtlpReceiver, ReceivedSpan};
use livegate_telemetry::{
    LogFormat, client_span, init, inject_current, inject_span, otel_enabled, record_status,
    server_span, set_parent_from_headers, trace_id,
};
use tracing::Instrument;

/// Set only in the environment of a child process.
const CHILD: &str = "LIVEGATE_TELEMETRY_TEST_CHILD";
/// The trace a client continues (the W3C spec's example ids).
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_PARENT: &str = "00f067aa0ba902b7";
const LONG_BATCH_DELAY_MS: &str = "600000";

struct Child {
    probes: HashMap<String, String>,
    stderr: String,
}

/// Run the test `name` of this binary in a new process with `env` (and no
/// inherited `OTEL_*` or `RUST_LOG`), and collect the `PROBE k=v` lines it
/// prints.
fn run_child(name: &str, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
    cmd.args([name, "--exact", "--nocapture", "--include-ignored"]);
    cmd.args(["--test-threads", "1"]);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("OTEL_") || k == "RUST_LOG" {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd.env(CHILD, "1").envs(env.iter().copied());
    let out = cmd.output().expect("run child test");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "child {name} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let probes: HashMap<String, String> = stdout
        .lines()
        // libtest may print `test NAME ... ` on the same line first.
        .filter_map(|l| l.find("PROBE ").map(|i| &l[i + "PROBE ".len()..]))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(
        probes.get("done").map(String::as_str),
        Some("true"),
        "child {name} did not run to the end\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    Child { probes, stderr }
}

fn probe(key: &str, value: impl std::fmt::Display) {
    println!("PROBE {key}={value}");
}

fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// What a gateway request does with the helpers: continue the client's
/// trace, fill fields, call the vendor in a child span, inject its context,
/// log an exchange event (which must not be exported), end both spans.
async fn a_request() {
    let mut inbound = HeaderMap::new();
    inbound.insert(
        "traceparent",
        HeaderValue::from_str(&format!("00-{CLIENT_TRACE}-{CLIENT_PARENT}-01")).unwrap(),
    );
    inbound.insert("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
    let server = server_span(&Method::POST, "/modules/liveness", "http");
    set_parent_from_headers(&server, &inbound);
    probe("trace_id", trace_id(&server).unwrap_or_default());
    async {
        let span = tracing::Span::current();
        span.record("tenant", "acme");
        span.record("request_id", "req-1");
        let mut current = HeaderMap::new();
        inject_current(&mut current);
        probe("current_traceparent", header(&current, "traceparent"));

        let url = "http://vendor.test:8081/modules/liveness?api_key=SECRET"
            .parse()
            .unwrap();
        let client = client_span(&Method::POST, &url);
        let mut outbound = HeaderMap::new();
        inject_span(&client, &mut outbound);
        probe("traceparent", header(&outbound, "traceparent"));
        probe("tracestate", header(&outbound, "tracestate"));
        async {
            tracing::info!(target: "livegate::exchange", secret = "DO-NOT-EXPORT", "exchange");
            tracing::debug_span!("debug_only").in_scope(|| {});
        }
        .instrument(client.clone())
        .await;
        record_status(&client, StatusCode::SERVICE_UNAVAILABLE);
        drop(client);
        span.record("outcome", "passed");
        record_status(&span, StatusCode::OK);
    }
    .instrument(server)
    .await;
}

#[tokio::test]
#[ignore = "runs in a child process of the tests below"]
async fn child_request_current_thread() {
    if !is_child() {
        return;
    }
    let guard = init(LogFormat::Json, "info");
    probe("exporting", guard.exporting());
    a_request().await;
    // Inside a current-thread runtime: the flush must not need it.
    guard.shutdown();
    probe("done", true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in a child process of the tests below"]
async fn child_request_multi_thread() {
    if !is_child() {
        return;
    }
    let guard = init(LogFormat::Text, "warn");
    probe("exporting", guard.exporting());
    a_request().await;
    guard.shutdown();
    probe("done", true);
}

/// No runtime at all, and the guard dropped rather than shut down.
#[test]
#[ignore = "runs in a child process of the tests below"]
fn child_drop_flushes() {
    if !is_child() {
        return;
    }
    let guard = init(LogFormat::Text, "info");
    probe("exporting", guard.exporting());
    tracing::info_span!("last_words", n = 1).in_scope(|| {});
    drop(guard);
    probe("done", true);
}

/// Export off (or misconfigured): `init` still works, twice, and every
/// helper is a no-op.
#[tokio::test]
#[ignore = "runs in a child process of the tests below"]
async fn child_no_export() {
    if !is_child() {
        return;
    }
    let guard = init(LogFormat::Text, "info");
    let second = init(LogFormat::Json, "debug");
    probe("exporting", guard.exporting() || second.exporting());
    probe("otel_enabled", otel_enabled());
    let mut inbound = HeaderMap::new();
    inbound.insert(
        "traceparent",
        HeaderValue::from_str(&format!("00-{CLIENT_TRACE}-{CLIENT_PARENT}-01")).unwrap(),
    );
    let span = server_span(&Method::GET, "/livez", "http");
    set_parent_from_headers(&span, &inbound);
    probe("trace_id", trace_id(&span).unwrap_or_default());
    let mut outbound = HeaderMap::new();
    inject_span(&span, &mut outbound);
    probe("injected", outbound.len());
    span.in_scope(|| tracing::info!("a log line"));
    drop(span);
    guard.shutdown();
    drop(second);
    probe("done", true);
}

fn only<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one span named {name:?} in {spans:#?}");
    found[0]
}

/// The request's spans as received, with everything the helpers promise.
fn check_request(child: &Child, spans: &[ReceivedSpan], transport: &str, service: &str) {
    assert_eq!(child.probes["exporting"], "true");
    assert_eq!(spans.len(), 2, "exactly the two INFO spans: {spans:#?}");

    let server = only(spans, "POST /modules/liveness");
    assert_eq!(server.kind, "server");
    assert_eq!(server.trace_id, CLIENT_TRACE, "client's trace continued");
    assert_eq!(
        server.parent_span_id, CLIENT_PARENT,
        "client's span is the parent"
    );
    assert_eq!(server.transport, transport);
    assert_eq!(server.service_name, service);
    for (k, v) in [
        ("http.request.method", "POST"),
        ("http.route", "/modules/liveness"),
        ("url.scheme", "http"),
        ("http.response.status_code", "200"),
        ("tenant", "acme"),
        ("request_id", "req-1"),
        ("outcome", "passed"),
    ] {
        assert_eq!(server.attr(k), Some(v), "{k} on {server:#?}");
    }
    // Never-recorded fields are not exported; nor are the otel.* controls.
    for k in [
        "key_id",
        "transaction_id",
        "error.type",
        "otel.name",
        "otel.kind",
    ] {
        assert_eq!(server.attr(k), None, "{k} on {server:#?}");
    }
    assert_eq!(server.status, "unset");

    let client = only(spans, "POST");
    assert_eq!(client.kind, "client");
    assert_eq!(client.trace_id, CLIENT_TRACE);
    assert_eq!(client.parent_span_id, server.span_id);
    for (k, v) in [
        ("http.request.method", "POST"),
        ("server.address", "vendor.test"),
        ("server.port", "8081"),
        ("url.full", "http://vendor.test:8081/modules/liveness"),
        ("http.response.status_code", "503"),
    ] {
        assert_eq!(client.attr(k), Some(v), "{k} on {client:#?}");
    }
    assert_eq!(client.status, "error");

    // Events (the exchange log line) and DEBUG spans stay out of the export.
    let all = format!("{spans:?}");
    assert!(!all.contains("DO-NOT-EXPORT"), "{all}");
    assert!(!all.contains("SECRET"), "{all}");
    assert!(!all.contains("debug_only"), "{all}");

    // What the helpers told the process.
    assert_eq!(child.probes["trace_id"], CLIENT_TRACE);
    assert_eq!(
        child.probes["traceparent"],
        format!("00-{CLIENT_TRACE}-{}-01", client.span_id)
    );
    assert_eq!(child.probes["tracestate"], "congo=t61rcWkgMzE");
    assert_eq!(
        child.probes["current_traceparent"],
        format!("00-{CLIENT_TRACE}-{}-01", server.span_id)
    );
}

#[test]
fn grpc_export_continues_the_client_trace() {
    let rx = OtlpReceiver::start().unwrap();
    let endpoint = rx.grpc_endpoint();
    let child = run_child(
        "child_request_current_thread",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            ("OTEL_BSP_SCHEDULE_DELAY", LONG_BATCH_DELAY_MS),
        ],
    );
    // The child has exited: whatever it flushed has been acknowledged.
    check_request(&child, &rx.spans(), "grpc", "livegate");
}

#[test]
fn http_export_continues_the_client_trace() {
    let rx = OtlpReceiver::start().unwrap();
    let endpoint = format!("{}/v1/traces", rx.http_endpoint());
    let child = run_child(
        "child_request_multi_thread",
        &[
            // No protocol: http/protobuf is the default.
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "livegate-test"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=ops"),
            ("OTEL_BSP_SCHEDULE_DELAY", LONG_BATCH_DELAY_MS),
        ],
    );
    check_request(&child, &rx.spans(), "http", "livegate-test");
}

#[test]
fn generic_http_endpoint_gets_the_traces_path() {
    let rx = OtlpReceiver::start().unwrap();
    let endpoint = rx.http_endpoint();
    let child = run_child(
        "child_drop_flushes",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", LONG_BATCH_DELAY_MS),
        ],
    );
    assert_eq!(child.probes["exporting"], "true");
    let spans = rx.spans();
    let s = only(&spans, "last_words");
    assert_eq!((s.transport, s.parent_span_id.as_str()), ("http", ""));
    assert_eq!(s.attr("n"), Some("1"));
}

#[test]
fn dropping_the_guard_flushes_grpc() {
    let rx = OtlpReceiver::start().unwrap();
    let endpoint = rx.grpc_endpoint();
    let child = run_child(
        "child_drop_flushes",
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", LONG_BATCH_DELAY_MS),
        ],
    );
    assert_eq!(child.probes["exporting"], "true");
    let spans = rx.spans();
    assert_eq!(only(&spans, "last_words").transport, "grpc");
}

#[tokio::test]
async fn wait_for_sees_spans_from_another_process() {
    let rx = OtlpReceiver::start().unwrap();
    let endpoint = rx.grpc_endpoint();
    // The default batch delay this time: the spans arrive on the SDK's own
    // schedule or at shutdown, whichever is first.
    let child = tokio::task::spawn_blocking(move || {
        run_child(
            "child_drop_flushes",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
    });
    let spans = rx
        .wait_for(
            |s| s.iter().any(|s| s.name == "last_words"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(only(&spans, "last_words").service_name, "livegate");
    child.await.unwrap();
}

/// Nothing configured, switched off, or misconfigured: init works, helpers
/// are no-ops, and the receiver (named as the endpoint where that applies)
/// gets nothing.
#[test]
fn no_export_unless_configured() {
    let rx = OtlpReceiver::start().unwrap();
    let http = rx.http_endpoint();
    let grpc = rx.grpc_endpoint();
    let https_grpc = grpc.replace("http://", "https://");
    // (case, environment, a warning expected on stderr)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<&'a str>);
    let cases: [Case<'_>; 6] = [
        ("nothing set", vec![], None),
        (
            "protocol but no endpoint",
            vec![("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
            None,
        ),
        (
            "sdk disabled",
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &http),
                ("OTEL_SDK_DISABLED", "true"),
            ],
            None,
        ),
        (
            "exporter none",
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &http),
                ("OTEL_TRACES_EXPORTER", "none"),
            ],
            None,
        ),
        (
            "unsupported protocol",
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &http),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ],
            Some("http/json"),
        ),
        (
            "grpc over https without TLS built in",
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &https_grpc),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
            Some("traces are not exported"),
        ),
    ];
    for (case, env, warning) in cases {
        let child = run_child("child_no_export", &env);
        let p = &child.probes;
        assert_eq!(p["exporting"], "false", "{case}");
        assert_eq!(p["otel_enabled"], "false", "{case}");
        assert_eq!(p["trace_id"], "", "{case}");
        assert_eq!(p["injected"], "0", "{case}");
        assert!(
            child.stderr.contains("a log line"),
            "{case}: {}",
            child.stderr
        );
        if let Some(w) = warning {
            assert!(
                child.stderr.contains("WARN") && child.stderr.contains(w),
                "{case}: {}",
                child.stderr
            );
        }
    }
    assert_eq!(rx.spans(), Vec::new());
}
