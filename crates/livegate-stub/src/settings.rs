//! `[simulator]`: the built-in simulator of the embedded default and of
//! `livegate stub`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use livegate_core::Secret;
use livegate_core::serde_duration::millis;
use serde::{Deserialize, Serialize};

use crate::{Faults, StubConfig};

/// The built-in vendor simulator (embedded default and `livegate stub`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorSettings {
    /// Serve with the simulator although tenants or a pepper are configured
    /// (and no `vendor.base_url`): an explicit opt-in, never a fallback.
    pub enabled: bool,
    /// Listener of `livegate stub`.
    pub listen: SocketAddr,
    /// Vendor key the simulator expects; random when unset.
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    #[serde(rename = "latency_ms", with = "millis")]
    pub latency: Duration,
    #[serde(rename = "jitter_ms", with = "millis")]
    pub jitter: Duration,
    /// Probabilities, 0.0 to 1.0, checked per request in this order.
    pub reset_rate: f64,
    pub timeout_rate: f64,
    pub server_error_rate: f64,
    pub malformed_rate: f64,
    pub error_rate: f64,
    /// How long a "timeout" fault hangs before answering.
    #[serde(rename = "hang_ms", with = "millis")]
    pub hang: Duration,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            api_key: None,
            api_key_file: None,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            reset_rate: 0.0,
            timeout_rate: 0.0,
            server_error_rate: 0.0,
            malformed_rate: 0.0,
            error_rate: 0.0,
            hang: crate::DEFAULT_HANG,
        }
    }
}

impl SimulatorSettings {
    /// What is wrong with these settings on their own, each problem
    /// naming its key (without the `simulator.` its section adds).
    pub fn problems(&self) -> Vec<String> {
        [
            ("reset_rate", self.reset_rate),
            ("timeout_rate", self.timeout_rate),
            ("server_error_rate", self.server_error_rate),
            ("malformed_rate", self.malformed_rate),
            ("error_rate", self.error_rate),
        ]
        .into_iter()
        .filter(|(_, r)| !(0.0..=1.0).contains(r))
        .map(|(name, _)| format!("{name} must be between 0.0 and 1.0"))
        .collect()
    }

    /// The simulator these settings describe, expecting `api_key`. It never
    /// keeps an image (recording is for tests only).
    pub fn stub_config(&self, api_key: &str) -> StubConfig {
        StubConfig {
            api_key: api_key.to_owned(),
            latency: self.latency,
            jitter: self.jitter,
            faults: Faults {
                reset_rate: self.reset_rate,
                timeout_rate: self.timeout_rate,
                server_error_rate: self.server_error_rate,
                malformed_rate: self.malformed_rate,
                error_rate: self.error_rate,
                hang: self.hang,
            },
            record: false,
        }
    }
}
