//! An in-process OTLP receiver for tests (feature `testkit`).
//!
//! [`OtlpReceiver::start`] listens on two loopback ports: a real OTLP/gRPC
//! collector (the trace, metrics and logs services' `Export` over HTTP/2)
//! and an OTLP/HTTP receiver (`POST /v1/traces`, `/v1/metrics`, `/v1/logs`,
//! `application/x-protobuf`). Both decode what arrives into
//! [`ReceivedSpan`]s, [`ReceivedPoint`]s and [`ReceivedLog`]s. It serves from a thread and runtime of its own, so a
//! test may block, spawn the process under test with `OTEL_*` pointed at
//! it, or run on any runtime; it stops when dropped.
//!
//! ```no_run
//! # async fn t() {
//! use std::time::Duration;
//! let rx = livegate_telemetry::testkit::OtlpReceiver::start().unwrap();
//! // spawn the gateway with OTEL_EXPORTER_OTLP_ENDPOINT=rx.http_endpoint() ...
//! let spans = rx
//!     .wait_for(|s| s.iter().any(|s| s.name == "POST /modules/liveness"), Duration::from_secs(30))
//!     .await
//!     .unwrap();
//! # }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// One span as the receiver got it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// 16 lowercase hex digits; empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `server`, `client`, `internal`, `producer`, `consumer` or `unspecified`.
    pub kind: String,
    /// `unset`, `ok` or `error`.
    pub status: String,
    /// Values stringified (`42`, `true`, `text`).
    pub attributes: Vec<(String, String)>,
    /// The resource's `service.name` (empty when absent).
    pub service_name: String,
    /// `grpc` or `http`: which endpoint received it.
    pub transport: &'static str,
}

/// The first of `attributes` named `key`.
fn attribute<'a>(attributes: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl ReceivedSpan {
    /// The first attribute named `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        attribute(&self.attributes, key)
    }
}

/// One data point of a metric as the receiver got it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedPoint {
    /// The instrument's name, e.g. `livegate.requests`.
    pub metric: String,
    pub unit: String,
    /// `sum` (monotonic), `updown` (non-monotonic sum), `gauge`,
    /// `histogram` or `other`.
    pub kind: &'static str,
    /// `cumulative`, `delta` or `unspecified` (gauges).
    pub temporality: &'static str,
    /// Values stringified (`42`, `true`, `text`).
    pub attributes: Vec<(String, String)>,
    /// A sum's or gauge's value; a histogram's sum.
    pub value: f64,
    /// A histogram's count (0 otherwise).
    pub count: u64,
    /// A histogram's bucket bounds and counts.
    pub bounds: Vec<f64>,
    pub bucket_counts: Vec<u64>,
    pub service_name: String,
    pub transport: &'static str,
}

impl ReceivedPoint {
    /// The first attribute named `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        attribute(&self.attributes, key)
    }
}

/// One log record as the receiver got it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedLog {
    pub event_name: String,
    /// The OTLP severity number (9 INFO, 13 WARN, 17 ERROR) and text.
    pub severity_number: i32,
    pub severity_text: String,
    /// The body, stringified.
    pub body: String,
    pub attributes: Vec<(String, String)>,
    pub time_unix_nano: u64,
    pub scope: String,
    pub service_name: String,
    pub transport: &'static str,
}

impl ReceivedLog {
    /// The first attribute named `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        attribute(&self.attributes, key)
    }
}

/// `wait_for` gave up; holds what had arrived by then.
#[derive(Debug, Clone)]
pub struct WaitTimeout {
    pub spans: Vec<ReceivedSpan>,
}

impl std::fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "timed out waiting for spans; {} received: {:#?}",
            self.spans.len(),
            self.spans
        )
    }
}

impl std::error::Error for WaitTimeout {}

#[derive(Clone)]
struct Store {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    points: Arc<Mutex<Vec<ReceivedPoint>>>,
    logs: Arc<Mutex<Vec<ReceivedLog>>>,
    changed: Arc<watch::Sender<u64>>,
}

fn service_name(attrs: &[KeyValue]) -> String {
    attrs
        .iter()
        .find(|kv| kv.key == "service.name")
        .map(|kv| stringify(kv.value.as_ref()))
        .unwrap_or_default()
}

fn attributes(attrs: Vec<KeyValue>) -> Vec<(String, String)> {
    attrs
        .into_iter()
        .map(|kv| (kv.key, stringify(kv.value.as_ref())))
        .collect()
}

impl Store {
    fn add_metrics(&self, request: ExportMetricsServiceRequest, transport: &'static str) {
        let mut new = Vec::new();
        for rm in request.resource_metrics {
            let service_name =
                service_name(rm.resource.as_ref().map_or(&[][..], |r| &r.attributes));
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    let point = |kind, temporality, attrs, value, count, bounds, bucket_counts| {
                        ReceivedPoint {
                            metric: m.name.clone(),
                            unit: m.unit.clone(),
                            kind,
                            temporality,
                            attributes: attributes(attrs),
                            value,
                            count,
                            bounds,
                            bucket_counts,
                            service_name: service_name.clone(),
                            transport,
                        }
                    };
                    let number = |v: Option<number_data_point::Value>| match v {
                        Some(number_data_point::Value::AsDouble(d)) => d,
                        Some(number_data_point::Value::AsInt(i)) => i as f64,
                        None => 0.0,
                    };
                    let temporality = |t: i32| match t {
                        1 => "delta",
                        2 => "cumulative",
                        _ => "unspecified",
                    };
                    match m.data.clone() {
                        Some(metric::Data::Sum(sum)) => {
                            let kind = if sum.is_monotonic { "sum" } else { "updown" };
                            for p in sum.data_points {
                                new.push(point(
                                    kind,
                                    temporality(sum.aggregation_temporality),
                                    p.attributes,
                                    number(p.value),
                                    0,
                                    Vec::new(),
                                    Vec::new(),
                                ));
                            }
                        }
                        Some(metric::Data::Gauge(g)) => {
                            for p in g.data_points {
                                new.push(point(
                                    "gauge",
                                    "unspecified",
                                    p.attributes,
                                    number(p.value),
                                    0,
                                    Vec::new(),
                                    Vec::new(),
                                ));
                            }
                        }
                        Some(metric::Data::Histogram(h)) => {
                            for p in h.data_points {
                                new.push(point(
                                    "histogram",
                                    temporality(h.aggregation_temporality),
                                    p.attributes,
                                    p.sum.unwrap_or(0.0),
                                    p.count,
                                    p.explicit_bounds,
                                    p.bucket_counts,
                                ));
                            }
                        }
                        _ => new.push(point(
                            "other",
                            "unspecified",
                            Vec::new(),
                            0.0,
                            0,
                            Vec::new(),
                            Vec::new(),
                        )),
                    }
                }
            }
        }
        self.points
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(new);
        self.changed.send_modify(|n| *n += 1);
    }

    fn add_logs(&self, request: ExportLogsServiceRequest, transport: &'static str) {
        let mut new = Vec::new();
        for rl in request.resource_logs {
            let service_name =
                service_name(rl.resource.as_ref().map_or(&[][..], |r| &r.attributes));
            for sl in rl.scope_logs {
                let scope = sl.scope.map(|s| s.name).unwrap_or_default();
                for l in sl.log_records {
                    new.push(ReceivedLog {
                        event_name: l.event_name,
                        severity_number: l.severity_number,
                        severity_text: l.severity_text,
                        body: stringify(l.body.as_ref()),
                        attributes: attributes(l.attributes),
                        time_unix_nano: l.time_unix_nano,
                        scope: scope.clone(),
                        service_name: service_name.clone(),
                        transport,
                    });
                }
            }
        }
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(new);
        self.changed.send_modify(|n| *n += 1);
    }

    fn add(&self, request: ExportTraceServiceRequest, transport: &'static str) {
        let mut new = Vec::new();
        for rs in request.resource_spans {
            let service_name = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| stringify(kv.value.as_ref()))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    new.push(ReceivedSpan {
                        trace_id: livegate_core::hex::encode(&s.trace_id),
                        span_id: livegate_core::hex::encode(&s.span_id),
                        parent_span_id: livegate_core::hex::encode(&s.parent_span_id),
                        name: s.name,
                        kind: match s.kind {
                            1 => "internal",
                            2 => "server",
                            3 => "client",
                            4 => "producer",
                            5 => "consumer",
                            _ => "unspecified",
                        }
                        .to_owned(),
                        status: match s.status.map_or(0, |st| st.code) {
                            1 => "ok",
                            2 => "error",
                            _ => "unset",
                        }
                        .to_owned(),
                        attributes: s
                            .attributes
                            .into_iter()
                            .map(|kv| (kv.key, stringify(kv.value.as_ref())))
                            .collect(),
                        service_name: service_name.clone(),
                        transport,
                    });
                }
            }
        }
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        spans.extend(new);
        self.changed.send_modify(|n| *n += 1);
    }
}

fn stringify(v: Option<&AnyValue>) -> String {
    use any_value::Value;
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => livegate_core::hex::encode(b),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| stringify(Some(v))).collect();
            format!("[{}]", items.join(","))
        }
        Some(other) => format!("{other:?}"),
    }
}

struct Collector(Store);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.add_metrics(request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0.add_logs(request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// A running OTLP receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    grpc: SocketAddr,
    http: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    points: Arc<Mutex<Vec<ReceivedPoint>>>,
    logs: Arc<Mutex<Vec<ReceivedLog>>>,
    changed: watch::Receiver<u64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Bind both endpoints on 127.0.0.1 (ephemeral ports) and serve them.
    pub fn start() -> std::io::Result<Self> {
        Self::start_at(
            "127.0.0.1:0".parse().expect("an address"),
            "127.0.0.1:0".parse().expect("an address"),
        )
    }

    /// The receiver again at the addresses of an earlier one (a collector
    /// that comes back after an outage), with nothing received yet.
    pub fn restart(grpc: &str, http: &str) -> std::io::Result<Self> {
        let addr = |e: &str| -> std::io::Result<SocketAddr> {
            e.trim_start_matches("http://")
                .parse()
                .map_err(|_| std::io::Error::other("not an endpoint of this receiver"))
        };
        Self::start_at(addr(grpc)?, addr(http)?)
    }

    fn start_at(grpc: SocketAddr, http: SocketAddr) -> std::io::Result<Self> {
        let grpc = std::net::TcpListener::bind(grpc)?;
        let http = std::net::TcpListener::bind(http)?;
        grpc.set_nonblocking(true)?;
        http.set_nonblocking(true)?;
        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        let (changed_tx, changed) = watch::channel(0);
        let store = Store {
            spans: Arc::default(),
            points: Arc::default(),
            logs: Arc::default(),
            changed: Arc::new(changed_tx),
        };
        let spans = Arc::clone(&store.spans);
        let points = Arc::clone(&store.points);
        let logs = Arc::clone(&store.logs);
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let (Ok(grpc), Ok(http)) =
                        (TcpListener::from_std(grpc), TcpListener::from_std(http))
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = serve_grpc(grpc, store.clone()) => {}
                        _ = serve_http(http, store) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(Self {
            grpc: grpc_addr,
            http: http_addr,
            spans,
            points,
            logs,
            changed,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` of the gRPC collector (for
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with protocol `grpc`).
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// `http://127.0.0.1:PORT` of the OTLP/HTTP receiver, the base URL
    /// (for `OTEL_EXPORTER_OTLP_ENDPOINT`; the exporter appends
    /// `/v1/traces`; `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` wants the full
    /// `{base}/v1/traces`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every metric data point received so far, in arrival order (with
    /// cumulative temporality, later points repeat earlier ones' series).
    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.points
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every log record received so far, in arrival order.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Wait until `pred` holds for the spans received so far (checked now
    /// and after each export), at most `timeout`.
    pub async fn wait_for(
        &self,
        pred: impl Fn(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>, WaitTimeout> {
        self.wait(|| self.spans(), pred, timeout)
            .await
            .map_err(|spans| WaitTimeout { spans })
    }

    /// [`wait_for`](Self::wait_for) for metric data points; the error
    /// holds what had arrived.
    pub async fn wait_for_points(
        &self,
        pred: impl Fn(&[ReceivedPoint]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ReceivedPoint>, Vec<ReceivedPoint>> {
        self.wait(|| self.points(), pred, timeout).await
    }

    /// [`wait_for`](Self::wait_for) for log records; the error holds what
    /// had arrived.
    pub async fn wait_for_logs(
        &self,
        pred: impl Fn(&[ReceivedLog]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ReceivedLog>, Vec<ReceivedLog>> {
        self.wait(|| self.logs(), pred, timeout).await
    }

    async fn wait<T>(
        &self,
        get: impl Fn() -> Vec<T>,
        pred: impl Fn(&[T]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<T>, Vec<T>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.changed.clone();
        loop {
            changed.borrow_and_update();
            let got = get();
            if pred(&got) {
                return Ok(got);
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                let got = get();
                return if pred(&got) { Ok(got) } else { Err(got) };
            }
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve_grpc(listener: TcpListener, store: Store) {
    let traces = TraceServiceServer::new(Collector(store.clone()));
    let metrics = MetricsServiceServer::new(Collector(store.clone()));
    let logs = LogsServiceServer::new(Collector(store));
    loop {
        let Ok((io, _)) = listener.accept().await else {
            continue;
        };
        let (traces, metrics, logs) = (traces.clone(), metrics.clone(), logs.clone());
        // One connection carries every service, routed by the gRPC path.
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            use tonic::codegen::Service;
            let path = req.uri().path().to_owned();
            let (mut traces, mut metrics, mut logs) =
                (traces.clone(), metrics.clone(), logs.clone());
            async move {
                if path.starts_with("/opentelemetry.proto.collector.metrics.") {
                    metrics.call(req).await
                } else if path.starts_with("/opentelemetry.proto.collector.logs.") {
                    logs.call(req).await
                } else {
                    traces.call(req).await
                }
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(io), service)
                .await;
        });
    }
}

async fn serve_http(listener: TcpListener, store: Store) {
    loop {
        let Ok((io, _)) = listener.accept().await else {
            continue;
        };
        let store = store.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| receive(req, store.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(io), service)
                .await;
        });
    }
}

async fn receive(
    req: http::Request<Incoming>,
    store: Store,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let reply = |status: http::StatusCode, body: Bytes| {
        let mut r = http::Response::new(Full::new(body));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-protobuf"),
        );
        Ok(r)
    };
    let path = req.uri().path().to_owned();
    if req.method() != http::Method::POST
        || !matches!(path.as_str(), "/v1/traces" | "/v1/metrics" | "/v1/logs")
    {
        return reply(http::StatusCode::NOT_FOUND, Bytes::new());
    }
    let protobuf = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/x-protobuf"));
    if !protobuf {
        return reply(http::StatusCode::UNSUPPORTED_MEDIA_TYPE, Bytes::new());
    }
    let Ok(body) = req.into_body().collect().await else {
        return reply(http::StatusCode::BAD_REQUEST, Bytes::new());
    };
    let body = body.to_bytes();
    let ok = match path.as_str() {
        "/v1/metrics" => ExportMetricsServiceRequest::decode(body)
            .map(|r| store.add_metrics(r, "http"))
            .map(|()| ExportMetricsServiceResponse::default().encode_to_vec()),
        "/v1/logs" => ExportLogsServiceRequest::decode(body)
            .map(|r| store.add_logs(r, "http"))
            .map(|()| ExportLogsServiceResponse::default().encode_to_vec()),
        _ => ExportTraceServiceRequest::decode(body)
            .map(|r| store.add(r, "http"))
            .map(|()| ExportTraceServiceResponse::default().encode_to_vec()),
    };
    match ok {
        Ok(answer) => reply(http::StatusCode::OK, answer.into()),
        Err(_) => reply(http::StatusCode::BAD_REQUEST, Bytes::new()),
    }
}
