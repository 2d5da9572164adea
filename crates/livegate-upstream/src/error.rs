//! Why a vendor call failed.

/// Why a vendor call failed.
///
/// Messages are lowercase and never hold the vendor key, the request body or
/// the image: they are safe to log. Which status and error code the gateway's
/// client sees for each variant is the binary's decision, not this crate's.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The base URL (or the vendor key, which must be a valid header value)
    /// cannot be used.
    #[error("vendor url is invalid")]
    InvalidUrl,
    /// The TLS configuration (extra CA file) cannot be built.
    #[error("tls setup failed: {0}")]
    Tls(String),
    /// No connection could be made: refused, no route to the host, the
    /// connect timeout, a failed TLS handshake. Nothing of the request was
    /// sent, so this is the one error that is safe to retry
    /// ([`ConnectRetryLayer`](crate::ConnectRetryLayer) does, once).
    #[error("vendor connection failed: {0}")]
    ConnectFailed(String),
    /// No answer, after a connection was made: it was lost (or the request
    /// failed) before the whole answer arrived. The vendor may have received,
    /// and billed, the request.
    #[error("vendor unreachable: {0}")]
    Unreachable(String),
    /// The whole exchange took longer than [`VendorSettings::timeout`](crate::VendorSettings::timeout).
    #[error("vendor timed out")]
    Timeout,
    /// An answer arrived but is not a JSON object of bounded size.
    #[error("vendor answered an invalid response: {0}")]
    BadResponse(&'static str),
    /// The vendor answered 401 or 403: the gateway's vendor key is wrong.
    #[error("vendor rejected the gateway's credentials (HTTP {0})")]
    Auth(u16),
    /// The [circuit breaker](crate::CircuitBreakerLayer) is open: the vendor
    /// was not called. `retry_after` is the time until the breaker lets a
    /// probe through, rounded up to whole seconds (at least one).
    #[error("vendor circuit open, retry after {}s", retry_after.as_secs())]
    CircuitOpen {
        /// Whole seconds, at least one: ready for a `Retry-After` header.
        retry_after: std::time::Duration,
    },
}

impl UpstreamError {
    /// The vendor did not answer within the total timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// The client could not be built (bad URL, key or CA file): a
    /// configuration problem, never returned by a call.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::InvalidUrl | Self::Tls(_))
    }
}
