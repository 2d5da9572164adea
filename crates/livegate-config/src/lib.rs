//! livegate's configuration.
//!
//! Owns the configuration types (every section `deny_unknown_fields`, so a
//! typo is an error naming the key), deserialized straight into the domain
//! types they mean (image policy and formats, key ids and hashes, times,
//! the log format); loading (a TOML file, then `LIVEGATE_*` environment
//! overrides, then secrets read from files); and the cross-field checks.
//! [`load`] collects every problem before failing so an operator sees all
//! mistakes of a file at once, each naming its key and the file or
//! variable it came from, never a value.
//!
//! Environment overrides are passed in as key/value pairs rather than read
//! from the process here, so tests never have to mutate their own
//! environment. It does not build anything from the configuration: the
//! binary turns these plain values into stores, clients and policies.

mod load;
mod types;

pub use livegate_core::Secret;
pub use load::{ConfigError, ENV_PREFIX, load};
pub use types::*;
