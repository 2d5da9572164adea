use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use figment::Figment;
use figment::error::{Actual, Kind};
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use livegate_auth::{KeyHash, KeyId};
use livegate_core::{Secret, Timestamp};
use livegate_payload::{FormatSet, ImageFormat};
use serde::Deserialize;

use crate::{Config, LogFormat, Mode, SinkKind};

/// Prefix of environment overrides: `LIVEGATE_VENDOR__TIMEOUT_MS=500`
/// overrides `vendor.timeout_ms` (`__` separates sections).
pub const ENV_PREFIX: &str = "LIVEGATE_";

/// Environment variables with the prefix that are not configuration keys.
/// (`LIVEGATE_ADMIN_URL` and `LIVEGATE_ADMIN_TOKEN` are the admin CLI's.)
const NOT_CONFIG: &[&str] = &[
    "LIVEGATE_CONFIG",
    "LIVEGATE_ADMIN_URL",
    "LIVEGATE_ADMIN_TOKEN",
];

/// Keys whose environment values are secrets: taken byte for byte, never
/// parsed (`007` stays `007`, quotes and spaces stay).
const SECRET_KEYS: &[&str] = &[
    "vendor.api_key",
    "auth.pepper",
    "simulator.api_key",
    "admin.token",
    "ops.metrics_token",
    "redis.url",
];

/// Why a configuration could not be loaded; lists every problem found.
///
/// Messages name the key, and the file or variable it came from, never a
/// value: a mistyped line may hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration{}:\n  - {}", in_file(.file), .problems.join("\n  - "))]
    Invalid {
        file: Option<PathBuf>,
        problems: Vec<String>,
    },
}

fn in_file(file: &Option<PathBuf>) -> String {
    file.as_ref()
        .map(|f| format!(" ({})", f.display()))
        .unwrap_or_default()
}

/// Loads the configuration: built-in defaults, then the TOML file (if
/// any), then `LIVEGATE_*` overrides from `env`, then secrets from their
/// files; finally validates. Every problem is reported at once.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        file: path.map(Path::to_owned),
        problems,
    };
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = path {
        figment = figment.merge(Toml::file_exact(path));
    }
    // Which variable set which key, to name it in errors.
    let mut from_env = BTreeMap::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if NOT_CONFIG.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let value = if SECRET_KEYS.contains(&key.as_str()) {
            Value::from(value)
        } else {
            // Same parsing as figment's own `Env` provider: `true`, `42`, `[a, b]`.
            Value::from_str(&value).unwrap_or_else(|_| Value::from(value))
        };
        figment = figment.merge(Serialized::global(&key, value));
        from_env.insert(key, name);
    }
    let sources = Sources {
        figment: &figment,
        from_env: &from_env,
    };

    let mut tree = figment
        .extract::<Dict>()
        .map_err(|e| invalid(sources.describe_all(e)))?;
    // Domain values (formats, key ids, hashes, times) are checked leaf by
    // leaf first, so that a file with several mistakes gets them all
    // reported, not only the first the typed extraction below stops at.
    let mut problems = check_domain_leaves(&mut tree);
    let extracted = problems.len();
    let Some(mut config) = extract(tree, &sources, &mut problems) else {
        return Err(invalid(problems));
    };
    if problems.len() > extracted {
        // Keys taken out for their mistakes stand at their defaults: checking
        // the rest against each other would report what is not there.
        return Err(invalid(problems));
    }
    config.resolve_secrets(&mut problems);
    config.validate_into(&mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(invalid(problems))
    }
}

/// Most problems the typed extraction reports before giving up (a file
/// is not expected to hold more mistakes than this).
const MAX_EXTRACTION_PROBLEMS: usize = 64;

/// The typed extraction, reporting every problem: serde stops at the first
/// one, so each reported key is taken out of the tree (it then has its
/// default) and the extraction runs again, until it succeeds or a problem
/// cannot be taken out (a missing key).
fn extract(mut tree: Dict, sources: &Sources<'_>, problems: &mut Vec<String>) -> Option<Config> {
    let mut taken_out: Vec<Vec<String>> = Vec::new();
    for _ in 0..MAX_EXTRACTION_PROBLEMS {
        let e = match Config::deserialize(&Value::from(tree.clone())) {
            Ok(c) => return Some(c),
            Err(e) => e,
        };
        let mut removed = false;
        for e in e {
            if let Kind::MissingField(field) = &e.kind {
                // A required key taken out for its wrong value: reported once.
                let mut full = e.path.clone();
                full.push(field.to_string());
                if taken_out.contains(&e.path) || taken_out.contains(&full) {
                    continue;
                }
            }
            problems.push(sources.describe(&e));
            if remove_leaf(&mut tree, &e.path) {
                taken_out.push(e.path.clone());
                removed = true;
            }
        }
        if !removed {
            return None;
        }
    }
    None
}

/// Takes the value at `path` (table keys and list indexes) out of the tree;
/// `false` when there is none.
fn remove_leaf(tree: &mut Dict, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut table = tree;
    let mut parents = parents.iter();
    while let Some(part) = parents.next() {
        let mut value = match table.get_mut(part) {
            Some(v) => v,
            None => return false,
        };
        // Lists of tables: `tenants.0.keys.1`.
        loop {
            match value {
                Value::Dict(_, d) => {
                    table = d;
                    break;
                }
                Value::Array(_, items) => {
                    let Some(i) = parents.next().and_then(|i| i.parse::<usize>().ok()) else {
                        return false;
                    };
                    match items.get_mut(i) {
                        Some(v) => value = v,
                        None => return false,
                    }
                }
                _ => return false,
            }
        }
    }
    table.remove(last).is_some()
}

/// Where each key's value came from.
struct Sources<'a> {
    figment: &'a Figment,
    from_env: &'a BTreeMap<String, String>,
}

impl Sources<'_> {
    fn describe_all(&self, e: figment::Error) -> Vec<String> {
        e.into_iter().map(|e| self.describe(&e)).collect()
    }

    /// `key: what is wrong (where it came from)`, with no value in it.
    fn describe(&self, e: &figment::Error) -> String {
        let key = e.path.join(".");
        let what = match &e.kind {
            Kind::Message(m) if e.path.is_empty() && self.is_file_error(e) => {
                // A TOML syntax error quotes the offending line, which may
                // hold a secret: keep only where it is.
                let line = m
                    .split_once(", line ")
                    .or_else(|| m.split_once("line "))
                    .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
                    .filter(|l| !l.is_empty());
                match line {
                    Some(l) => format!("TOML syntax error at line {l}"),
                    None => "not a valid TOML file".to_owned(),
                }
            }
            Kind::Message(m) => m.clone(),
            Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
                format!("expected {expected}, found {}", type_of(actual))
            }
            Kind::InvalidLength(n, expected) => format!("expected {expected}, found {n} items"),
            Kind::UnknownVariant(_, expected) => {
                format!("unknown value, expected one of: {}", expected.join(", "))
            }
            Kind::UnknownField(field, _) => {
                // The error's path already ends with the unknown key.
                let key = if e.path.last() == Some(field) {
                    key
                } else {
                    join(&key, field)
                };
                return format!("unknown key `{key}`{}", self.origin(&key, e));
            }
            Kind::MissingField(field) => {
                let key = if e.path.last().map(String::as_str) == Some(field) {
                    key
                } else {
                    join(&key, field)
                };
                return format!("missing key `{key}`{}", self.origin(&key, e));
            }
            Kind::DuplicateField(field) => format!("duplicate key `{field}`"),
            other => format!("{other}"),
        };
        let key = if key.is_empty() {
            "configuration".into()
        } else {
            key
        };
        format!("{key}: {what}{}", self.origin(&key, e))
    }

    fn is_file_error(&self, e: &figment::Error) -> bool {
        e.metadata
            .as_ref()
            .and_then(|m| m.source.as_ref())
            .is_some_and(|s| s.file_path().is_some())
    }

    /// ` (in FILE)` or ` (from LIVEGATE_…)`; nothing for built-in defaults.
    /// Never a location in the gateway's source code.
    fn origin(&self, key: &str, e: &figment::Error) -> String {
        if let Some(var) = self.from_env.get(key) {
            return format!(" (from {var})");
        }
        let file = e
            .metadata
            .as_ref()
            .or_else(|| self.figment.find_metadata(key))
            .and_then(|m| m.source.as_ref())
            .and_then(|s| s.file_path());
        file.map(|f| format!(" (in {})", f.display()))
            .unwrap_or_default()
    }
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

/// The kind of value found, never the value itself.
fn type_of(actual: &Actual) -> &'static str {
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) => "a number",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit | Actual::Option => "nothing",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        _ => "another kind of value",
    }
}

/// Checks each leaf that deserializes into a domain type, records what is
/// wrong with it, and replaces a bad one so the typed extraction can go on.
fn check_domain_leaves(tree: &mut Dict) -> Vec<String> {
    let mut p = Vec::new();
    if let Some(Value::Dict(_, images)) = tree.get_mut("images") {
        check_formats("images", images, &mut p);
    }
    if let Some(Value::Dict(_, redis)) = tree.get_mut("redis") {
        check_leaf::<crate::FailMode>(
            redis,
            "fail_mode",
            "redis",
            "must be \"local\", \"open\" or \"closed\"",
            &mut p,
        );
    }
    if let Some(Value::Dict(_, log)) = tree.get_mut("log") {
        check_leaf::<LogFormat>(log, "format", "log", "must be \"text\" or \"json\"", &mut p);
    }
    if let Some(Value::Array(_, tenants)) = tree.get_mut("tenants") {
        for (i, tenant) in tenants.iter_mut().enumerate() {
            let Value::Dict(_, tenant) = tenant else {
                continue;
            };
            let at = format!("tenants[{i}]");
            if let Some(Value::Dict(_, images)) = tenant.get_mut("images") {
                check_formats(&format!("{at}.images"), images, &mut p);
            }
            let Some(Value::Array(_, keys)) = tenant.get_mut("keys") else {
                continue;
            };
            for (j, key) in keys.iter_mut().enumerate() {
                let Value::Dict(_, key) = key else { continue };
                let at = format!("{at}.keys[{j}]");
                if check_leaf::<KeyId>(
                    key,
                    "id",
                    &at,
                    "is not a key id (12 characters of a-z and 0-9)",
                    &mut p,
                ) {
                    key.insert("id".into(), Value::from("000000000000"));
                }
                if check_leaf::<KeyHash>(
                    key,
                    "hash",
                    &at,
                    "must be 64 lowercase hex characters (from `livegate keys new`)",
                    &mut p,
                ) {
                    key.insert("hash".into(), Value::from("0".repeat(64)));
                }
                check_leaf::<Timestamp>(
                    key,
                    "expires_at",
                    &at,
                    "must be an RFC 3339 time such as 2027-01-31T00:00:00Z",
                    &mut p,
                );
            }
        }
    }
    p
}

/// `true` when the leaf was there and bad (it is then removed).
fn check_leaf<T: for<'de> Deserialize<'de>>(
    table: &mut Dict,
    name: &str,
    at: &str,
    problem: &str,
    p: &mut Vec<String>,
) -> bool {
    let bad = table.get(name).is_some_and(|v| T::deserialize(v).is_err());
    if bad {
        p.push(format!("{at}.{name} {problem}"));
        table.remove(name);
    }
    bad
}

/// Names an unknown format when it is a plain word (so a list holding by
/// mistake something secret is not echoed).
fn check_formats(at: &str, table: &mut Dict, p: &mut Vec<String>) {
    let Some(value) = table.get("formats") else {
        return;
    };
    if FormatSet::deserialize(value).is_ok() {
        return;
    }
    let named: Vec<String> = match value {
        Value::Array(_, items) => items
            .iter()
            .filter_map(|v| v.as_str())
            .filter(|s| ImageFormat::from_str(s).is_err())
            .filter(|s| s.len() <= 16 && s.bytes().all(|b| b.is_ascii_alphanumeric()))
            .map(|s| format!("{s:?}"))
            .collect(),
        _ => Vec::new(),
    };
    let which = if named.is_empty() {
        String::new()
    } else {
        format!(" {}", named.join(", "))
    };
    p.push(format!(
        "{at}.formats: unknown format{which} (jpeg, png, webp, gif)"
    ));
    table.remove("formats");
}

pub(crate) fn read_secret(
    inline: &mut Option<Secret>,
    file: &Option<PathBuf>,
    name: &str,
    problems: &mut Vec<String>,
) {
    let Some(file) = file else { return };
    if inline.is_some() {
        problems.push(format!("{name} and {name}_file are both set; set one"));
        return;
    }
    match std::fs::read_to_string(file) {
        // Mounted secrets often end with a newline the writer did not mean.
        Ok(s) if !s.trim().is_empty() => {
            *inline = Some(Secret::new(s.trim_end_matches(['\r', '\n'])))
        }
        Ok(_) => problems.push(format!("{name}_file {} is empty", file.display())),
        Err(e) => problems.push(format!("{name}_file {}: {e}", file.display())),
    }
}

impl Config {
    fn resolve_secrets(&mut self, problems: &mut Vec<String>) {
        read_secret(
            &mut self.vendor.api_key,
            &self.vendor.api_key_file,
            "vendor.api_key",
            problems,
        );
        read_secret(
            &mut self.auth.pepper,
            &self.auth.pepper_file,
            "auth.pepper",
            problems,
        );
        read_secret(
            &mut self.redis.url,
            &self.redis.url_file,
            "redis.url",
            problems,
        );
        self.admin.resolve_secrets(problems);
        self.ops.resolve_secrets(problems);
        read_secret(
            &mut self.simulator.api_key,
            &self.simulator.api_key_file,
            "simulator.api_key",
            problems,
        );
    }

    /// True when no vendor is configured: the gateway runs the built-in
    /// simulator and in-memory stores (the embedded default, or the
    /// simulator explicitly enabled).
    pub fn is_embedded_default(&self) -> bool {
        self.vendor.base_url.is_none()
    }

    /// [`Mode::Vendor`]; [`Mode::Simulator`] when explicitly enabled
    /// although production settings are there; [`Mode::Embedded`] when
    /// nothing is configured.
    pub fn mode(&self) -> Mode {
        if !self.is_embedded_default() {
            Mode::Vendor
        } else if self.simulator.enabled {
            Mode::Simulator
        } else {
            Mode::Embedded
        }
    }

    /// What is configured that only makes sense with a real vendor.
    fn production_like(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if !self.tenants.is_empty() {
            set.push("tenants");
        }
        if self.auth.pepper.is_some() || self.auth.pepper_file.is_some() {
            set.push("auth.pepper");
        }
        if self.admin.any_token() {
            set.push("admin.token");
        }
        if self.redis.url.is_some() || self.redis.url_file.is_some() {
            set.push("redis.url");
        }
        set
    }

    /// Why `serve` must refuse this configuration: production settings
    /// without `vendor.base_url` would serve real tenants simulator scores
    /// (a KYC check that fails open), unless `simulator.enabled` says so.
    pub fn serve_problems(&self) -> Vec<String> {
        let set = self.production_like();
        if self.vendor.base_url.is_some() || self.simulator.enabled || set.is_empty() {
            return Vec::new();
        }
        vec![format!(
            "vendor.base_url is not set, but {} {} configured: refusing to answer real tenants with simulator scores. Set vendor.base_url, or set simulator.enabled = true to run against the built-in simulator on purpose",
            set.join(" and "),
            if set.len() == 1 { "is" } else { "are" }
        )]
    }

    /// The cross-field checks; each value's own form was checked when it
    /// was deserialized.
    fn validate_into(&self, p: &mut Vec<String>) {
        // Each section's own checks, named with their section.
        for (section, problems) in [
            ("server", self.server.problems()),
            ("vendor", self.vendor.problems()),
            ("redis", self.redis.problems()),
            ("ratelimit", self.ratelimit.problems()),
            ("simulator", self.simulator.problems()),
        ] {
            p.extend(problems.into_iter().map(|m| format!("{section}.{m}")));
        }
        let a = &self.audit;
        if let Some(why) = a.sink.problem() {
            p.push(why);
        }
        if a.sink.contains(SinkKind::File) && a.path.is_none() {
            p.push("audit.path is required with audit.sink = \"file\"".into());
        }
        if a.sink.contains(SinkKind::Redis)
            && self.redis.url.is_none()
            && self.redis.url_file.is_none()
        {
            p.push("audit.sink = \"redis\" needs redis.url (or redis.url_file)".into());
        }
        if a.capacity == 0 {
            p.push("audit.capacity must be at least 1".into());
        }
        if a.max_files == 0 || a.max_file_bytes < 4096 {
            p.push(
                "audit.max_files must be at least 1 and audit.max_file_bytes at least 4096".into(),
            );
        }
        if a.stream_key.is_empty() || a.stream_max_len == 0 {
            p.push(
                "audit.stream must not be empty and audit.stream_max_len must be at least 1".into(),
            );
        }
        if self.vendor.base_url.is_some() && self.auth.pepper.is_none() {
            p.push(
                "auth.pepper (or auth.pepper_file) is required when vendor.base_url is set".into(),
            );
        }
        self.admin.validate_into(p);
        self.ops.validate_into(p);
        if self.ops.listen == self.server.listen && self.ops.listen.port() != 0 {
            p.push("ops.listen must differ from server.listen: the admin API is never on the public listener".into());
        }
        if let Some(pepper) = &self.auth.pepper {
            if pepper.expose().len() < livegate_auth::hash::MIN_PEPPER_LEN {
                p.push("auth.pepper must be at least 16 bytes".into());
            }
        }
        if !self.tenants.is_empty() && self.auth.pepper.is_none() {
            p.push("auth.pepper (or auth.pepper_file) is required when tenants are configured: their key hashes depend on it".into());
        }

        for problem in self.images.problems() {
            p.push(policy_problem("images", problem));
        }
        for problem in self.protection.problems() {
            p.push(policy_problem("protection", problem));
        }

        let mut tenant_ids = std::collections::HashSet::new();
        let mut key_ids = std::collections::HashSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            let at = format!("tenants[{i}]");
            if !valid_tenant_id(&t.id) {
                p.push(format!(
                    "{at}.id must be 1-64 characters of a-z, 0-9, '_' or '-'"
                ));
            } else if !tenant_ids.insert(t.id.as_str()) {
                p.push(format!("{at}.id {:?} is used twice", t.id));
            }
            if t.rate_per_second
                .is_some_and(|r| !(r.is_finite() && r > 0.0 && r <= 100_000.0))
            {
                p.push(format!(
                    "{at}.rate_per_second must be above 0 and at most 100000"
                ));
            }
            if t.burst.is_some_and(|b| b == 0 || b > 100_000) {
                p.push(format!("{at}.burst must be between 1 and 100000"));
            }
            if t.monthly_quota == Some(0) {
                p.push(format!("{at}.monthly_quota must be at least 1"));
            }
            for problem in self.images.with(&t.images).problems() {
                p.push(policy_problem(&format!("{at}.images"), problem));
            }
            for problem in self.protection.with(&t.protection).problems() {
                p.push(policy_problem(&format!("{at}.protection"), problem));
            }
            for (j, k) in t.keys.iter().enumerate() {
                if !key_ids.insert(k.id.as_str()) {
                    p.push(format!(
                        "{at}.keys[{j}].id {:?} is used twice",
                        k.id.as_str()
                    ));
                }
            }
        }
    }
}

/// `images.formats must …` when the problem starts with a key's name.
fn policy_problem(at: &str, problem: &str) -> String {
    const KEYS: [&str; 10] = [
        "formats",
        "min_",
        "replay_",
        "score_",
        "review_",
        "idempotency_",
        "max_pixels",
        "strip_",
        "slot_wait_ms",
        "fingerprint_",
    ];
    if KEYS.iter().any(|k| problem.starts_with(k)) {
        format!("{at}.{problem}")
    } else {
        format!("{at}: {problem}")
    }
}

fn valid_tenant_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
