//! Helpers shared by the vendor-client tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bytes::Bytes;
use livegate_upstream::{UpstreamError, VendorClient, VendorResponse, VendorSettings};
use tower::ServiceExt;

pub const KEY: &str = "upstream-test-key";

pub fn settings(base_url: String, ca_pem: Option<Vec<u8>>) -> VendorSettings {
    VendorSettings {
        base_url,
        api_key: livegate_core::Secret::new(KEY),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        max_response_bytes: 1024 * 1024,
        http2_prior_knowledge: false,
        pool_idle_timeout: Duration::from_secs(30),
        ca_pem,
    }
}

/// The vendor's request body for a real JPEG, in the strict padded
/// standard base64 the simulator demands.
pub fn body() -> Bytes {
    let jpeg = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/face-320x240.jpg"
    ))
    .unwrap();
    Bytes::from(format!(
        r#"{{"faceImage":"{}"}}"#,
        base64_simd::STANDARD.encode_to_string(&jpeg)
    ))
}

/// One call through the `Service` impl, with no extra header.
pub async fn send(client: &VendorClient, body: Bytes) -> Result<VendorResponse, UpstreamError> {
    client.clone().oneshot(http::Request::new(body)).await
}
