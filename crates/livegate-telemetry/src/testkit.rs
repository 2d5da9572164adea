//! An in-process OTLP receiver for tests (feature `testkit`).
//!
//! [`OtlpReceiver::start`] listens on two loopback ports: a real OTLP/gRPC
//! collector (`opentelemetry.proto.collector.trace.v1.TraceService/Export`
//! over HTTP/2) and an OTLP/HTTP receiver (`POST /v1/traces`,
//! `application/x-protobuf`). Both decode what arrives into
//! [`ReceivedSpan`]s. It serves from a thread and runtime of its own, so a
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
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
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

impl ReceivedSpan {
    /// The first attribute named `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
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
    changed: Arc<watch::Sender<u64>>,
}

impl Store {
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

/// A running OTLP receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    grpc: SocketAddr,
    http: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    changed: watch::Receiver<u64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Bind both endpoints on 127.0.0.1 (ephemeral ports) and serve them.
    pub fn start() -> std::io::Result<Self> {
        let grpc = std::net::TcpListener::bind("127.0.0.1:0")?;
        let http = std::net::TcpListener::bind("127.0.0.1:0")?;
        grpc.set_nonblocking(true)?;
        http.set_nonblocking(true)?;
        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        let (changed_tx, changed) = watch::channel(0);
        let store = Store {
            spans: Arc::default(),
            changed: Arc::new(changed_tx),
        };
        let spans = Arc::clone(&store.spans);
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

    /// Wait until `pred` holds for the spans received so far (checked now
    /// and after each export), at most `timeout`.
    pub async fn wait_for(
        &self,
        pred: impl Fn(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.changed.clone();
        loop {
            changed.borrow_and_update();
            let spans = self.spans();
            if pred(&spans) {
                return Ok(spans);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    let spans = self.spans();
                    return if pred(&spans) {
                        Ok(spans)
                    } else {
                        Err(WaitTimeout { spans })
                    };
                }
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
    let service = TraceServiceServer::new(Collector(store));
    loop {
        let Ok((io, _)) = listener.accept().await else {
            continue;
        };
        let service = TowerToHyperService::new(service.clone());
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
    if req.method() != http::Method::POST || req.uri().path() != "/v1/traces" {
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
    match ExportTraceServiceRequest::decode(body.to_bytes()) {
        Ok(request) => {
            store.add(request, "http");
            reply(
                http::StatusCode::OK,
                ExportTraceServiceResponse::default().encode_to_vec().into(),
            )
        }
        Err(_) => reply(http::StatusCode::BAD_REQUEST, Bytes::new()),
    }
}
