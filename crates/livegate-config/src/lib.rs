//! livegate's configuration.
//!
//! Composes the configuration from the sections each crate owns (every
//! section `deny_unknown_fields`, so a typo is an error naming the key;
//! each deserialized straight into its crate's settings type, with real
//! durations, enums and domain types: `[server]` from `livegate-core`,
//! `[vendor]` from `livegate-upstream`, `[redis]` from `livegate-redis`,
//! `[ratelimit]`, `[audit]`, `[log]` (`livegate-telemetry`), `[simulator]`
//! (`livegate-stub`), `[images]` and `[protection]`); owns the sections no
//! other crate uses (`[auth]`, `[admin]`, `[ops]`, `[[tenants]]`); loading (a TOML file, then `LIVEGATE_*` environment
//! overrides, then secrets read from files); and the cross-field checks.
//! [`load`] collects every problem before failing so an operator sees all
//! mistakes of a file at once, each naming its key and the file or
//! variable it came from, never a value.
//!
//! Environment overrides are passed in as key/value pairs rather than read
//! from the process here, so tests never have to mutate their own
//! environment. It does not build anything from the configuration: each
//! crate's settings build its parts, and the binary wires them.

mod load;
mod types;

pub use livegate_core::Secret;
pub use load::{ConfigError, ENV_PREFIX, load};
pub use types::*;
