//! The protection policy: the deployment's `[protection]` section, and a
//! tenant's overrides on top of it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fingerprint::DEFAULT_MAX_DISTANCE;
use crate::store::MAX_DISTANCE;

/// What happens to an image that repeats an earlier one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayMode {
    /// Not checked, not remembered.
    Off,
    /// Forwarded; the response carries `x-livegate-replay-of` and the
    /// audit record names the earlier transaction.
    #[default]
    Flag,
    /// Refused with 409 before the vendor is called.
    Reject,
}

impl ReplayMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayMode::Off => "off",
            ReplayMode::Flag => "flag",
            ReplayMode::Reject => "reject",
        }
    }
}

/// Whose earlier images a new one is compared with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayScope {
    /// The same tenant's images only.
    #[default]
    Tenant,
    /// Every tenant's images that also use the global scope.
    Global,
}

/// The answer of a score threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Pass,
    Fail,
    Review,
}

impl Decision {
    /// The `x-livegate-decision` value, also used in audit and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Pass => "pass",
            Decision::Fail => "fail",
            Decision::Review => "review",
        }
    }
}

/// A score threshold with an optional review band below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreDecision {
    /// Scores at or above this pass.
    pub threshold: u8,
    /// Scores in `[threshold - review_band, threshold)` get `review`.
    pub review_band: u8,
}

impl ScoreDecision {
    pub fn decide(&self, score: f64) -> Decision {
        let t = f64::from(self.threshold);
        if score >= t {
            Decision::Pass
        } else if score >= t - f64::from(self.review_band) {
            Decision::Review
        } else {
            Decision::Fail
        }
    }
}

/// The protection a request gets: the deployment's `[protection]` section
/// with the tenant's overrides applied.
///
/// Deserialized from `[protection]` (`replay`, `replay_window_hours`,
/// `replay_scope`, `replay_max_distance`, `strip_metadata`,
/// `score_threshold`, `review_band`, and the deployment-only
/// `idempotency_retention_hours`, `idempotency_wait_ms`, `max_pixels`,
/// `slot_wait_ms`, `fingerprint_deadline_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectionPolicy {
    pub replay: ReplayMode,
    pub replay_window_hours: u32,
    pub replay_scope: ReplayScope,
    /// Perceptual matches up to this Hamming distance (of 64 bits) count
    /// as replays; at most [`MAX_DISTANCE`].
    pub replay_max_distance: u32,
    pub strip_metadata: bool,
    /// `None`: no decision header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_threshold: Option<u8>,
    pub review_band: u8,
    /// How long an idempotent answer is kept (deployment-wide).
    pub idempotency_retention_hours: u32,
    /// How long a duplicate waits for the first request with its key before
    /// it gets 409 (deployment-wide).
    pub idempotency_wait_ms: u64,
    /// Images with more pixels than this are not decoded for the perceptual
    /// hash (only their exact digest is checked): the bound against
    /// decompression bombs (deployment-wide).
    pub max_pixels: u64,
    /// How long a request waits for a decode slot before its fingerprint
    /// is skipped (`flag`) or it is refused with 503 (`reject`)
    /// (deployment-wide).
    pub slot_wait_ms: u64,
    /// How long a request waits for its fingerprint before going on without
    /// it (deployment-wide).
    pub fingerprint_deadline_ms: u64,
}

impl Default for ProtectionPolicy {
    /// Replay detection `flag` over 24 h per tenant, metadata removal on, no
    /// score threshold, idempotent answers kept 24 h.
    fn default() -> Self {
        Self {
            replay: ReplayMode::Flag,
            replay_window_hours: 24,
            replay_scope: ReplayScope::Tenant,
            replay_max_distance: DEFAULT_MAX_DISTANCE,
            strip_metadata: true,
            score_threshold: None,
            review_band: 0,
            idempotency_retention_hours: 24,
            idempotency_wait_ms: 30_000,
            max_pixels: 50_000_000,
            slot_wait_ms: 250,
            fingerprint_deadline_ms: 1_000,
        }
    }
}

impl ProtectionPolicy {
    /// This policy with a tenant's overrides applied.
    #[must_use]
    pub fn with(&self, o: &ProtectionOverrides) -> ProtectionPolicy {
        ProtectionPolicy {
            replay: o.replay.unwrap_or(self.replay),
            replay_window_hours: o.replay_window_hours.unwrap_or(self.replay_window_hours),
            replay_scope: o.replay_scope.unwrap_or(self.replay_scope),
            replay_max_distance: o.replay_max_distance.unwrap_or(self.replay_max_distance),
            strip_metadata: o.strip_metadata.unwrap_or(self.strip_metadata),
            score_threshold: o.score_threshold.or(self.score_threshold),
            review_band: o.review_band.unwrap_or(self.review_band),
            ..*self
        }
    }

    pub fn replay_window(&self) -> Duration {
        Duration::from_secs(u64::from(self.replay_window_hours) * 3600)
    }

    pub fn idempotency_retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.idempotency_retention_hours) * 3600)
    }

    pub fn idempotency_wait(&self) -> Duration {
        Duration::from_millis(self.idempotency_wait_ms)
    }

    /// How long a request waits for a decode slot.
    pub fn slot_wait(&self) -> Duration {
        Duration::from_millis(self.slot_wait_ms)
    }

    /// How long a request waits for its fingerprint.
    pub fn fingerprint_deadline(&self) -> Duration {
        Duration::from_millis(self.fingerprint_deadline_ms)
    }

    /// The score decision, when a threshold is set.
    pub fn decision(&self) -> Option<ScoreDecision> {
        self.score_threshold.map(|threshold| ScoreDecision {
            threshold,
            review_band: self.review_band,
        })
    }

    /// What makes this policy unusable, as messages to prefix with where the
    /// policy came from.
    pub fn problems(&self) -> Vec<&'static str> {
        let mut p = Vec::new();
        if !(1..=MAX_HOURS).contains(&self.replay_window_hours) {
            p.push("replay_window_hours must be between 1 and 8760 (a year)");
        }
        if self.replay_max_distance > MAX_DISTANCE {
            p.push("replay_max_distance must be at most 7");
        }
        if self.score_threshold.is_some_and(|t| t > 100) {
            p.push("score_threshold must be between 0 and 100");
        }
        if self.review_band > 100 {
            p.push("review_band must be between 0 and 100");
        }
        if !(1..=MAX_HOURS).contains(&self.idempotency_retention_hours) {
            p.push("idempotency_retention_hours must be between 1 and 8760 (a year)");
        }
        if self.max_pixels == 0 {
            p.push("max_pixels must be at least 1");
        }
        if self.slot_wait_ms > 60_000 {
            p.push("slot_wait_ms must be at most 60000");
        }
        if !(1..=60_000).contains(&self.fingerprint_deadline_ms) {
            p.push("fingerprint_deadline_ms must be between 1 and 60000");
        }
        p
    }
}

/// The longest retention of any protection store: a year.
const MAX_HOURS: u32 = 8760;

/// A tenant's changes to the deployment's [`ProtectionPolicy`]; unset
/// fields inherit, per request, so a tenant follows later changes of the
/// deployment default for every field it does not set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectionOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_window_hours: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_scope: Option<ReplayScope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_max_distance: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strip_metadata: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_threshold: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_band: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_bands() {
        let d = ScoreDecision {
            threshold: 80,
            review_band: 10,
        };
        assert_eq!(d.decide(95.0), Decision::Pass);
        assert_eq!(d.decide(80.0), Decision::Pass);
        assert_eq!(d.decide(79.5), Decision::Review);
        assert_eq!(d.decide(70.0), Decision::Review);
        assert_eq!(d.decide(69.9), Decision::Fail);
        let no_band = ScoreDecision {
            threshold: 50,
            review_band: 0,
        };
        assert_eq!(no_band.decide(49.0), Decision::Fail);
        assert_eq!(no_band.decide(50.0), Decision::Pass);
    }

    #[test]
    fn overrides_inherit_unset_fields() {
        let base = ProtectionPolicy::default();
        let t = base.with(&ProtectionOverrides {
            replay: Some(ReplayMode::Reject),
            score_threshold: Some(70),
            ..Default::default()
        });
        assert_eq!(t.replay, ReplayMode::Reject);
        assert_eq!(t.score_threshold, Some(70));
        assert!(t.strip_metadata);
        assert_eq!(t.replay_window_hours, 24);
        assert!(base.problems().is_empty());
        let bad = base.with(&ProtectionOverrides {
            replay_max_distance: Some(9),
            score_threshold: Some(101),
            ..Default::default()
        });
        assert_eq!(bad.problems().len(), 2);
    }
}
