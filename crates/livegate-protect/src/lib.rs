//! Liveness-aware protection: what a gateway that knows it carries face
//! images can do before (or instead of) a paid vendor call.
//!
//! - **Replay detection** ([`fingerprint`], [`store::ReplayStore`]): each
//!   accepted image's exact digest (SHA-256 of the decoded bytes) and a
//!   64-bit perceptual hash are kept for a window; a new image matching one
//!   exactly, or within a Hamming distance, is flagged or refused.
//! - **Metadata removal** ([`strip`]): EXIF, XMP, IPTC and comments taken
//!   out of JPEG, PNG and WebP losslessly (segments and chunks dropped, the
//!   compressed pixels untouched).
//! - **Score decision** ([`ScoreDecision`]): `pass`, `fail` or `review` from
//!   the vendor's score and the tenant's threshold.
//! - **Idempotent retries** ([`store::IdempotencyStore`]): a retry with the
//!   same `Idempotency-Key` and image gets the stored answer.
//!
//! Nothing here keeps an image: stores hold digests, hashes, transaction ids
//! and the vendor's JSON answer, each for a configured retention.

pub mod fingerprint;
pub mod layer;
mod policy;
pub mod store;
pub mod strip;

pub use layer::{
    DECISION_HEADER, IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAY_HEADER, Protect, ProtectError,
    ProtectLayer, ProtectionSource, REPLAY_OF_HEADER,
};
pub use policy::{
    Decision, ProtectionOverrides, ProtectionPolicy, ReplayMode, ReplayScope, ScoreDecision,
};
