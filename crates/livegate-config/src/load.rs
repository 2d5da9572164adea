use std::path::Path;
use std::str::FromStr;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;

use crate::{Config, Secret};

/// Prefix of environment overrides: `LIVEGATE_VENDOR__TIMEOUT_MS=500`
/// overrides `vendor.timeout_ms` (`__` separates sections).
pub const ENV_PREFIX: &str = "LIVEGATE_";

/// Environment variables with the prefix that are not configuration keys.
const NOT_CONFIG: &[&str] = &["LIVEGATE_CONFIG"];

/// Why a configuration could not be loaded; lists every problem found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Parse(String),
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Loads the configuration: built-in defaults, then the TOML file (if
/// any), then `LIVEGATE_*` overrides from `env`, then secrets from their
/// files; finally validates.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = path {
        figment = figment.merge(Toml::file_exact(path));
    }
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if NOT_CONFIG.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let key = rest.to_ascii_lowercase().replace("__", ".");
        // Same parsing as figment's own `Env` provider: `true`, `42`, `[a, b]`.
        let value = Value::from_str(&value).unwrap_or_else(|_| Value::from(value));
        figment = figment.merge(Serialized::global(&key, value));
    }
    let mut config: Config = figment
        .extract()
        .map_err(|e| ConfigError::Parse(describe(e)))?;
    let mut problems = Vec::new();
    config.resolve_secrets(&mut problems);
    config.validate_into(&mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn read_secret(
    inline: &mut Option<Secret>,
    file: &Option<std::path::PathBuf>,
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
            &mut self.simulator.api_key,
            &self.simulator.api_key_file,
            "simulator.api_key",
            problems,
        );
    }

    /// True when no vendor is configured: the gateway runs the built-in
    /// simulator and in-memory stores.
    pub fn is_embedded_default(&self) -> bool {
        self.vendor.base_url.is_none()
    }

    /// Checks everything; returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        self.validate_into(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn validate_into(&self, p: &mut Vec<String>) {
        let s = &self.server;
        if s.body_limit_bytes == 0 || s.body_limit_bytes > 64 * 1024 * 1024 {
            p.push("server.body_limit_bytes must be between 1 and 67108864 (64 MiB)".into());
        }
        for (name, v) in [
            ("server.body_read_timeout_ms", s.body_read_timeout_ms),
            ("server.drain_timeout_ms", s.drain_timeout_ms),
            ("vendor.connect_timeout_ms", self.vendor.connect_timeout_ms),
            ("vendor.timeout_ms", self.vendor.timeout_ms),
            ("vendor.max_response_bytes", self.vendor.max_response_bytes),
        ] {
            if v == 0 {
                p.push(format!("{name} must be greater than 0"));
            }
        }

        let v = &self.vendor;
        if let Some(url) = &v.base_url {
            match http_url(url) {
                Ok(()) => {}
                Err(e) => p.push(format!("vendor.base_url: {e}")),
            }
            if v.api_key.is_none() {
                p.push("vendor.api_key (or vendor.api_key_file) is required when vendor.base_url is set".into());
            }
            if self.auth.pepper.is_none() {
                p.push(
                    "auth.pepper (or auth.pepper_file) is required when vendor.base_url is set"
                        .into(),
                );
            }
        }
        if let Some(ca) = &v.ca_file {
            match std::fs::read_to_string(ca) {
                Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => {}
                Ok(_) => p.push(format!(
                    "vendor.ca_file {} holds no PEM certificate",
                    ca.display()
                )),
                Err(e) => p.push(format!("vendor.ca_file {}: {e}", ca.display())),
            }
        }
        if let Some(pepper) = &self.auth.pepper {
            if pepper.expose().len() < 16 {
                p.push("auth.pepper must be at least 16 bytes".into());
            }
        }
        if !self.tenants.is_empty() && self.auth.pepper.is_none() {
            p.push("auth.pepper (or auth.pepper_file) is required when tenants are configured: their key hashes depend on it".into());
        }

        if self.images.formats.is_empty() {
            p.push("images.formats must name at least one format".into());
        }
        check_images("images", &self.images.formats, self.images_bounds(None), p);

        let sim = &self.simulator;
        for (name, r) in [
            ("reset_rate", sim.reset_rate),
            ("timeout_rate", sim.timeout_rate),
            ("server_error_rate", sim.server_error_rate),
            ("malformed_rate", sim.malformed_rate),
            ("error_rate", sim.error_rate),
        ] {
            if !(0.0..=1.0).contains(&r) {
                p.push(format!("simulator.{name} must be between 0.0 and 1.0"));
            }
        }

        if !matches!(self.log.format.as_str(), "text" | "json") {
            p.push("log.format must be \"text\" or \"json\"".into());
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
            if t.images.formats.as_ref().is_some_and(Vec::is_empty) {
                p.push(format!("{at}.images.formats must name at least one format"));
            }
            let formats = t.images.formats.as_deref().unwrap_or_default();
            check_images(
                &format!("{at}.images"),
                formats,
                self.images_bounds(Some(t)),
                p,
            );
            for (j, k) in t.keys.iter().enumerate() {
                let at = format!("{at}.keys[{j}]");
                if livegate_auth::key::KeyId::from_str(&k.id).is_err() {
                    p.push(format!(
                        "{at}.id is not a key id (12 characters of a-z and 0-9)"
                    ));
                } else if !key_ids.insert(k.id.as_str()) {
                    p.push(format!("{at}.id {:?} is used twice", k.id));
                }
                if livegate_auth::hash::KeyHash::from_str(&k.hash).is_err() {
                    p.push(format!(
                        "{at}.hash must be 64 lowercase hex characters (from `livegate keys new`)"
                    ));
                }
                if let Some(exp) = &k.expires_at {
                    if humantime::parse_rfc3339_weak(exp).is_err() {
                        p.push(format!(
                            "{at}.expires_at must be an RFC 3339 time such as 2027-01-31T00:00:00Z"
                        ));
                    }
                }
            }
        }
    }

    /// (min_width, min_height, max_width, max_height) in force for a tenant.
    pub fn images_bounds(&self, tenant: Option<&crate::TenantConfig>) -> (u32, u32, u32, u32) {
        let d = &self.images;
        let o = tenant.map(|t| &t.images);
        (
            o.and_then(|o| o.min_width).unwrap_or(d.min_width),
            o.and_then(|o| o.min_height).unwrap_or(d.min_height),
            o.and_then(|o| o.max_width).unwrap_or(d.max_width),
            o.and_then(|o| o.max_height).unwrap_or(d.max_height),
        )
    }
}

fn check_images(at: &str, formats: &[String], bounds: (u32, u32, u32, u32), p: &mut Vec<String>) {
    for f in formats {
        if livegate_payload::ImageFormat::from_str(f).is_err() {
            p.push(format!(
                "{at}.formats: unknown format {f:?} (jpeg, png, webp, gif)"
            ));
        }
    }
    let (min_w, min_h, max_w, max_h) = bounds;
    if min_w == 0 || min_h == 0 {
        p.push(format!("{at}: min_width and min_height must be at least 1"));
    }
    if min_w > max_w || min_h > max_h {
        p.push(format!("{at}: minimum dimensions exceed the maximum"));
    }
}

fn valid_tenant_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn http_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| "not a URL".to_string())?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err("scheme must be http or https".into()),
    }
    if uri.host().is_none() {
        return Err("no host".into());
    }
    if uri.query().is_some() {
        return Err("must not have a query".into());
    }
    Ok(())
}
