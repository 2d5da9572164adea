//! One typical request's exchange record: forwarded, with an image and a
//! vendor answer carrying a score.

use std::time::{Duration, SystemTime};

use livegate_core::exchange::{ExchangeRecord, ImageFacts, Outcome, PrincipalFacts, UpstreamFacts};

pub(crate) fn record(tenant: &str) -> ExchangeRecord {
    ExchangeRecord {
        request_id: "0123456789abcdef".into(),
        started_at: SystemTime::UNIX_EPOCH,
        principal: Some(PrincipalFacts {
            tenant: tenant.into(),
            key_id: "k1".into(),
        }),
        image: Some(ImageFacts {
            format: "jpeg",
            width: 320,
            height: 240,
            size: 20_000,
            sha256: [7; 32],
            rewritten: false,
        }),
        upstream: Some(UpstreamFacts {
            status: Some(200),
            transaction_id: Some("abcdefghijklm".into()),
            score: Some(97.0),
            error_code: None,
            latency: Duration::from_millis(40),
            sent_bytes: 27_000,
            received_bytes: 120,
        }),
        error: None,
        cause: None,
        status: Some(200),
        outcome: Outcome::Forwarded,
        total: Duration::from_millis(45),
        trace_id: None,
        reserved: true,
        protection: None,
    }
}
