//! The circuit breaker and the connect-only retry around the real client,
//! over real sockets, against the simulator (real time).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{KEY, TlsFront, body, https, settings, tls_front_dropping};
use livegate_stub::{Faults, StubConfig};
use livegate_upstream::{
    BreakerSettings, BreakerState, CircuitBreakerLayer, ConnectRetryLayer, RetrySettings,
    UpstreamError, VendorClient, VendorResponse,
};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// The client, counting the calls made into it (one per connect attempt
/// when nothing listens).
fn counted(
    client: VendorClient,
) -> (
    impl Service<
        http::Request<Bytes>,
        Response = VendorResponse,
        Error = UpstreamError,
        Future = impl Send,
    > + Clone
    + Send,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let service = service_fn(move |req| {
        counter.fetch_add(1, Ordering::SeqCst);
        client.clone().oneshot(req)
    });
    (service, calls)
}

/// `[breaker] -> [retry] -> client`, as the gateway composes them, and the
/// breaker's handle.
fn guarded<S>(
    breaker: BreakerSettings,
    client: S,
) -> (
    livegate_upstream::CircuitBreaker<livegate_upstream::ConnectRetry<S>>,
    livegate_upstream::BreakerHandle,
) {
    let breaker = CircuitBreakerLayer::new(breaker);
    let state = breaker.handle();
    let vendor = ServiceBuilder::new()
        .layer(breaker)
        .layer(ConnectRetryLayer::new(RetrySettings::default()))
        .service(client);
    (vendor, state)
}

async fn call<S>(service: &S) -> Result<VendorResponse, UpstreamError>
where
    S: Service<http::Request<Bytes>, Response = VendorResponse, Error = UpstreamError> + Clone,
{
    service.clone().oneshot(http::Request::new(body())).await
}

fn resets() -> Faults {
    Faults {
        reset_rate: 1.0,
        ..Faults::default()
    }
}

/// Nothing listens there (a port just freed).
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn the_breaker_opens_on_resets_fails_fast_and_a_probe_closes_it() {
    let stub = livegate_stub::spawn(StubConfig {
        faults: resets(),
        ..StubConfig::new(KEY)
    })
    .await
    .unwrap();
    let (vendor, state) = guarded(
        BreakerSettings {
            consecutive_failures: 3,
            open_for: Duration::from_millis(300),
            ..BreakerSettings::default()
        },
        VendorClient::new(&settings(stub.base_url(), None)).unwrap(),
    );

    for _ in 0..3 {
        let err = call(&vendor).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Unreachable(_)), "{err}");
    }
    assert_eq!(stub.calls(), 3);
    assert_eq!(
        state.state(),
        BreakerState::Open {
            retry_after: Duration::from_secs(1)
        }
    );
    for _ in 0..5 {
        let err = call(&vendor).await.unwrap_err();
        assert!(
            matches!(err, UpstreamError::CircuitOpen { retry_after } if retry_after == Duration::from_secs(1)),
            "{err}"
        );
    }
    assert_eq!(stub.calls(), 3, "an open breaker does not call the vendor");

    stub.set_faults(Faults::default());
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(state.state().as_str(), "half_open");
    let answer = call(&vendor).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(state.state().as_str(), "closed");
    assert_eq!(stub.calls(), 4);
}

#[tokio::test]
async fn a_vendor_that_resets_after_reading_the_body_is_called_once_per_request() {
    let stub = livegate_stub::spawn(StubConfig {
        faults: resets(),
        ..StubConfig::new(KEY)
    })
    .await
    .unwrap();
    let (client, attempts) = counted(VendorClient::new(&settings(stub.base_url(), None)).unwrap());
    let vendor = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(BreakerSettings::default()))
        .layer(ConnectRetryLayer::new(RetrySettings::default()))
        .service(client);
    for n in 1..=4 {
        let err = call(&vendor).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Unreachable(_)), "{err}");
        assert_eq!(stub.calls(), n, "the vendor may have billed it: no retry");
        assert_eq!(attempts.load(Ordering::SeqCst), n as usize);
    }
}

#[tokio::test]
async fn nothing_listening_means_two_connect_attempts_then_connect_failed() {
    let (client, attempts) = counted(VendorClient::new(&settings(closed_port(), None)).unwrap());
    let vendor = ServiceBuilder::new()
        .layer(ConnectRetryLayer::new(RetrySettings::default()))
        .service(client);
    let err = call(&vendor).await.unwrap_err();
    assert!(matches!(err, UpstreamError::ConnectFailed(_)), "{err}");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_breaker_counts_one_failure_per_retried_call_and_its_refusals_are_not_retried() {
    let (client, attempts) = counted(VendorClient::new(&settings(closed_port(), None)).unwrap());
    let (vendor, state) = guarded(
        BreakerSettings {
            consecutive_failures: 2,
            ..BreakerSettings::default()
        },
        client,
    );
    call(&vendor).await.unwrap_err();
    assert_eq!(state.state(), BreakerState::Closed, "one call, one failure");
    call(&vendor).await.unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    assert_eq!(state.state().as_str(), "open");
    let err = call(&vendor).await.unwrap_err();
    assert!(matches!(err, UpstreamError::CircuitOpen { .. }), "{err}");
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
}

/// The simulator behind a TLS front that closes its first connection before
/// the handshake, and a client trusting the front.
async fn behind_a_front_dropping_the_first_connection()
-> (livegate_stub::StubHandle, TlsFront, VendorClient) {
    let stub = livegate_stub::spawn(StubConfig::new(KEY)).await.unwrap();
    let front = tls_front_dropping(stub.addr, 1).await;
    let client = VendorClient::new(&settings(
        https(front.addr),
        Some(front.ca_pem.clone().into_bytes()),
    ))
    .unwrap();
    (stub, front, client)
}

/// The first TCP connection is closed before the TLS handshake (a
/// connection that could not be made), the second is served: the request
/// reaches the vendor exactly once, and succeeds.
#[tokio::test]
async fn a_vendor_that_drops_the_first_connection_is_called_exactly_once() {
    let (stub, front, client) = behind_a_front_dropping_the_first_connection().await;
    let (client, attempts) = counted(client);
    let (vendor, state) = guarded(
        BreakerSettings {
            consecutive_failures: 1,
            ..BreakerSettings::default()
        },
        client,
    );

    let answer = call(&vendor).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(front.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(stub.calls(), 1);
    assert_eq!(
        state.state(),
        BreakerState::Closed,
        "the retried call succeeded"
    );
}

/// Without the retry layer, the same dropped connection is a
/// `ConnectFailed`, and the vendor never saw the request.
#[tokio::test]
async fn a_connection_dropped_before_the_handshake_is_a_connect_failure() {
    let (stub, _front, client) = behind_a_front_dropping_the_first_connection().await;
    let err = call(&client).await.unwrap_err();
    assert!(matches!(err, UpstreamError::ConnectFailed(_)), "{err}");
    assert_eq!(stub.calls(), 0);
    // The next connection is served.
    assert_eq!(call(&client).await.unwrap().status, 200);
    assert_eq!(stub.calls(), 1);
}
