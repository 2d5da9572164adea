//! `[redis]`: where the shared state lives and what happens without it.

use std::path::PathBuf;
use std::time::Duration;

use livegate_core::Secret;
use livegate_core::serde_duration::millis;
use serde::{Deserialize, Serialize};

/// Redis: tenants and keys, rate limits, protection state and (optionally)
/// the audit stream, shared by every replica. Without a URL each replica
/// keeps them in memory (the embedded default, or config tenants).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…`; several,
    /// comma-separated, are the nodes of a Redis Cluster. A secret (it may
    /// hold a password).
    pub url: Option<Secret>,
    pub url_file: Option<PathBuf>,
    /// With Redis unreachable: `local` (keys verified before keep working,
    /// default), `open`, or `closed` (`/readyz` fails too).
    pub fail_mode: FailMode,
    /// Bound on every Redis command.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// Bound on each Redis command of an admin call (key issuance and the
    /// other writes): longer than `timeout_ms`, since an operator waits for
    /// it and a timed-out write may still have landed.
    #[serde(rename = "admin_timeout_ms", with = "millis")]
    pub admin_timeout: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            fail_mode: FailMode::Local,
            timeout: Duration::from_millis(50),
            admin_timeout: Duration::from_secs(2),
        }
    }
}

impl RedisSettings {
    /// What is wrong with these settings on their own, each problem
    /// naming its key (without the `redis.` its section adds).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (name, zero) in [
            ("timeout_ms", self.timeout.is_zero()),
            ("admin_timeout_ms", self.admin_timeout.is_zero()),
        ] {
            if zero {
                p.push(format!("{name} must be greater than 0"));
            }
        }
        p
    }

    /// The configured URL's nodes: one for a single server, several for a
    /// Redis Cluster. Empty without a URL.
    pub fn nodes(&self) -> Vec<&str> {
        self.url
            .as_ref()
            .map(|u| u.expose().split(',').map(str::trim).collect())
            .unwrap_or_default()
    }
}

/// What the gateway does while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Keys verified before keep working; each replica enforces its share
    /// of the rate limits in process.
    #[default]
    Local,
    /// Admit everything.
    Open,
    /// Refuse everything; `/readyz` fails too.
    Closed,
}

impl FailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}
