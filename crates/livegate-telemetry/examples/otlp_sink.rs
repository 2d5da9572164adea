//! A local OTLP receiver (gRPC and HTTP/protobuf) that counts what it gets,
//! for benchmarks and manual checks: prints its two endpoints, then, on
//! Ctrl-C or SIGTERM, how many spans arrived.
//!
//! ```text
//! cargo run --release -p livegate-telemetry --features testkit --example otlp_sink
//! ```

use livegate_telemetry::testkit::OtlpReceiver;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let rx = OtlpReceiver::start()?;
    println!("otlp grpc {}", rx.grpc_endpoint());
    println!("otlp http {}", rx.http_endpoint());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    println!("spans {}", rx.spans().len());
    Ok(())
}
