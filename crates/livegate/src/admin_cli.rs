//! `livegate tenants …` and `livegate keys …` against a running gateway's
//! admin API: the URL and token from flags or `LIVEGATE_ADMIN_URL` /
//! `LIVEGATE_ADMIN_TOKEN`; a table for people by default, `--output json`
//! for scripts (the admin API's own JSON, unchanged). Each command is one
//! [`AdminCall`] of a route the admin router lists ([`livegate_admin::ROUTES`]).
//!
//! The token is whichever one is given: `[admin] token`, or any of
//! `[[admin.tokens]]` whose scopes cover the command (`read` for `list` and
//! `get`, `keys` for `keys issue|revoke|rotate`, `admin` for the rest). The
//! gateway decides; on its 403 the error names the scope the command needs.
//!
//! Plain HTTP: the operations listener is meant for loopback or a port
//! forward (`kubectl port-forward`), never the open network.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use livegate_admin::{ROUTES, Scope};
use livegate_core::Secret;
use serde_json::Value;

/// Where the admin API is.
#[derive(Args, Clone)]
pub struct AdminTarget {
    /// The operations listener, e.g. http://127.0.0.1:9090.
    #[arg(long, env = "LIVEGATE_ADMIN_URL")]
    pub admin_url: Option<String>,
    /// The admin token (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "LIVEGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// `table` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// One of the admin API's routes, as [`livegate_admin::ROUTES`] lists it:
/// `(method, path template)`.
pub type Route = (&'static str, &'static str);

/// The method and path of `route` with its `{…}` parameters replaced by
/// `params`, in order. The route must be one the admin router has (one of
/// [`livegate_admin::ROUTES`]), so the command line cannot drift from it.
pub fn route_path(route: Route, params: &[&str]) -> anyhow::Result<(Method, String)> {
    let (method, template) = livegate_admin::ROUTES
        .iter()
        .map(|r| (r.method, r.path))
        .find(|r| *r == route)
        .with_context(|| format!("the admin API has no route {} {}", route.0, route.1))?;
    let mut params = params.iter();
    let mut path = String::new();
    for segment in template.split('/').skip(1) {
        path.push('/');
        if segment.starts_with('{') && segment.ends_with('}') {
            let value = params
                .next()
                .with_context(|| format!("{template}: no value for {segment}"))?;
            path.push_str(value);
        } else {
            path.push_str(segment);
        }
    }
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| anyhow!("{method}: {e}"))?;
    Ok((method, path))
}

/// One admin call; the JSON answer, or the API's error as an error.
pub fn call(
    target: &AdminTarget,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let base = target
        .admin_url
        .as_deref()
        .context("the admin API's URL: --admin-url or LIVEGATE_ADMIN_URL")?;
    let token = Secret::new(
        target
            .admin_token
            .clone()
            .context("the admin token: LIVEGATE_ADMIN_TOKEN or --admin-token")?,
    );
    let scope = scope_of(method.as_str(), path);
    let uri = format!("{}{path}", base.trim_end_matches('/'));
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(&uri)
        .header("authorization", format!("Bearer {}", token.expose()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .context("building the request")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, bytes) = rt.block_on(async {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let res = tokio::time::timeout(Duration::from_secs(30), client.request(req))
            .await
            .map_err(|_| anyhow!("the admin API did not answer in 30 s"))?
            .with_context(|| format!("calling {base}"))?;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>((status, bytes))
    })?;
    let json: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("the admin API answered HTTP {status} without JSON"))?;
    if !status.is_success() {
        let hint = match (json["errorCode"].as_u64(), scope) {
            (Some(40302), Some(scope)) => format!(
                "; this command needs a token with scope `{}`{}",
                scope.as_str(),
                if scope == Scope::Keys {
                    " (of this tenant, if the token lists tenants)"
                } else {
                    ""
                }
            ),
            _ => String::new(),
        };
        bail!(
            "HTTP {status}: {} (errorCode {}){hint}",
            json["message"].as_str().unwrap_or("?"),
            json["errorCode"]
        );
    }
    Ok(json)
}

/// The scope an admin call needs, from the admin API's own route table.
pub fn scope_of(method: &str, path: &str) -> Option<Scope> {
    let path = path.split('?').next().unwrap_or(path);
    ROUTES
        .iter()
        .find(|r| {
            r.method == method && {
                let want: Vec<&str> = r.path.split('/').collect();
                let got: Vec<&str> = path.split('/').collect();
                want.len() == got.len()
                    && want
                        .iter()
                        .zip(&got)
                        .all(|(w, g)| w == g || (w.starts_with('{') && !g.is_empty()))
            }
        })
        .map(|r| r.scope)
}

/// Prints an answer: JSON as is, or a table of `columns` (one row per
/// object; a single object is one row).
pub fn print(target: &AdminTarget, answer: &Value, columns: &[&str]) {
    if let Output::Json = target.output {
        println!("{answer:#}");
        return;
    }
    let rows: Vec<&Value> = match answer {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let cell = |v: &Value, c: &str| match &v[c] {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(columns.iter().map(|c| (*c).to_owned()).collect())
    );
    for r in rows {
        println!("{}", line(columns.iter().map(|c| cell(r, c)).collect()));
    }
}

pub const TENANT_COLUMNS: &[&str] = &[
    "id",
    "name",
    "disabled",
    "ratePerSecond",
    "burst",
    "monthlyQuota",
];
pub const KEY_COLUMNS: &[&str] = &[
    "keyId",
    "tenantId",
    "state",
    "expiresAt",
    "lastUsedAt",
    "rotatedFrom",
];

/// The configuration file of a command that reads it.
#[derive(Args)]
pub struct ConfigArg {
    /// TOML configuration file; `LIVEGATE_*` variables override it.
    #[arg(long, short, env = "LIVEGATE_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Issue a key for a tenant through the admin API; the key is printed once.
    Issue {
        #[arg(long)]
        tenant: String,
        /// Expiry, RFC 3339 (e.g. 2027-01-31T00:00:00Z).
        #[arg(long)]
        expires_at: Option<String>,
        /// This issuance's id, chosen by the caller: repeating the command
        /// with it never makes a second key (409 40905 names the first).
        #[arg(long)]
        request_id: Option<String>,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// A tenant's keys (ids and states, never secrets), through the admin API.
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Revoke a key, through the admin API.
    Revoke {
        key_id: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Replace a key with a new one; the old one works for the grace period.
    Rotate {
        key_id: String,
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Offline: make a key for the configuration file (prints the key once
    /// and the config lines holding its id and hash). Needs the pepper.
    New {
        #[command(flatten)]
        config: ConfigArg,
        /// Tenant id the key is for.
        #[arg(long)]
        tenant: String,
        /// Expiry, RFC 3339 (e.g. 2027-01-31T00:00:00Z).
        #[arg(long)]
        expires_at: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum TenantsCommand {
    /// List tenants: through the admin API when its URL is given, else the
    /// configuration file's tenants and key ids (never secrets).
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Create a tenant through the admin API.
    Create {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        settings: TenantSettingsArgs,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Show a tenant.
    Get {
        id: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Change a tenant's name or settings (what is given).
    Update {
        id: String,
        #[command(flatten)]
        settings: TenantSettingsArgs,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Disable a tenant: its keys get 403.
    Disable {
        id: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Enable a tenant again.
    Enable {
        id: String,
        #[command(flatten)]
        target: AdminTarget,
    },
}

#[derive(Args)]
pub struct TenantSettingsArgs {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    rate_per_second: Option<f64>,
    #[arg(long)]
    burst: Option<u32>,
    #[arg(long)]
    monthly_quota: Option<u64>,
}

impl TenantSettingsArgs {
    fn json(&self, id: Option<&str>) -> serde_json::Value {
        let mut v = serde_json::json!({
            "name": self.name,
            "ratePerSecond": self.rate_per_second,
            "burst": self.burst,
            "monthlyQuota": self.monthly_quota,
        });
        if let (Some(id), Some(map)) = (id, v.as_object_mut()) {
            map.insert("id".into(), id.into());
        }
        // Unset settings are left out rather than sent as null.
        if let Some(map) = v.as_object_mut() {
            map.retain(|_, x| !x.is_null());
        }
        v
    }
}

/// A command carried out by one admin API call.
pub struct AdminCall {
    target: AdminTarget,
    route: Route,
    params: Vec<String>,
    body: Option<serde_json::Value>,
    /// The answer's columns in a table.
    columns: &'static [&'static str],
}

impl AdminCall {
    fn new(target: AdminTarget, route: Route, params: &[&str]) -> Self {
        Self {
            target,
            route,
            params: params.iter().map(|p| (*p).to_owned()).collect(),
            body: None,
            columns: TENANT_COLUMNS,
        }
    }

    fn body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    fn columns(mut self, columns: &'static [&'static str]) -> Self {
        self.columns = columns;
        self
    }

    pub fn run(self) -> anyhow::Result<()> {
        let params: Vec<&str> = self.params.iter().map(String::as_str).collect();
        let (method, path) = route_path(self.route, &params)?;
        let answer = call(&self.target, method, &path, self.body)?;
        print(&self.target, &answer, self.columns);
        Ok(())
    }
}

impl TenantsCommand {
    pub fn admin_call(self) -> AdminCall {
        match self {
            Self::List { target, .. } => AdminCall::new(target, ("GET", "/admin/v1/tenants"), &[]),
            Self::Create {
                id,
                settings,
                target,
            } => AdminCall::new(target, ("POST", "/admin/v1/tenants"), &[])
                .body(settings.json(Some(&id))),
            Self::Get { id, target } => {
                AdminCall::new(target, ("GET", "/admin/v1/tenants/{id}"), &[&id])
            }
            Self::Update {
                id,
                settings,
                target,
            } => AdminCall::new(target, ("PATCH", "/admin/v1/tenants/{id}"), &[&id])
                .body(settings.json(None)),
            Self::Disable { id, target } => {
                AdminCall::new(target, ("POST", "/admin/v1/tenants/{id}/disable"), &[&id])
            }
            Self::Enable { id, target } => {
                AdminCall::new(target, ("POST", "/admin/v1/tenants/{id}/enable"), &[&id])
            }
        }
    }
}

impl KeysCommand {
    /// `keys new` works offline: it is handled before, never through here.
    pub fn admin_call(self) -> anyhow::Result<AdminCall> {
        Ok(match self {
            Self::Issue {
                tenant,
                expires_at,
                request_id,
                target,
            } => AdminCall::new(target, ("POST", "/admin/v1/tenants/{id}/keys"), &[&tenant])
                .body(serde_json::json!({ "expiresAt": expires_at, "requestId": request_id }))
                .columns(ISSUED_COLUMNS),
            Self::List { tenant, target } => {
                AdminCall::new(target, ("GET", "/admin/v1/tenants/{id}/keys"), &[&tenant])
                    .columns(KEY_COLUMNS)
            }
            Self::Revoke { key_id, target } => AdminCall::new(
                target,
                ("POST", "/admin/v1/keys/{keyId}/revoke"),
                &[&key_id],
            )
            .columns(KEY_COLUMNS),
            Self::Rotate {
                key_id,
                grace_seconds,
                target,
            } => AdminCall::new(
                target,
                ("POST", "/admin/v1/keys/{keyId}/rotate"),
                &[&key_id],
            )
            .body(serde_json::json!({ "graceSeconds": grace_seconds }))
            .columns(ISSUED_COLUMNS),
            Self::New { .. } => anyhow::bail!("`keys new` makes no admin call"),
        })
    }
}

/// Columns of an issued key: the key itself is shown this once.
pub const ISSUED_COLUMNS: &[&str] = &["keyId", "tenantId", "expiresAt", "key"];

#[cfg(test)]
mod tests {
    /// Every admin command calls a route the admin router has.
    #[test]
    fn every_admin_command_calls_a_route_of_the_admin_api() {
        use super::*;
        let target = || AdminTarget {
            admin_url: None,
            admin_token: None,
            output: Output::Json,
        };
        let settings = || TenantSettingsArgs {
            name: None,
            rate_per_second: None,
            burst: None,
            monthly_quota: None,
        };
        let id = || "acme".to_owned();
        let calls = [
            TenantsCommand::List {
                config: ConfigArg { config: None },
                target: target(),
            }
            .admin_call(),
            TenantsCommand::Create {
                id: id(),
                settings: settings(),
                target: target(),
            }
            .admin_call(),
            TenantsCommand::Get {
                id: id(),
                target: target(),
            }
            .admin_call(),
            TenantsCommand::Update {
                id: id(),
                settings: settings(),
                target: target(),
            }
            .admin_call(),
            TenantsCommand::Disable {
                id: id(),
                target: target(),
            }
            .admin_call(),
            TenantsCommand::Enable {
                id: id(),
                target: target(),
            }
            .admin_call(),
            KeysCommand::Issue {
                tenant: id(),
                expires_at: None,
                request_id: None,
                target: target(),
            }
            .admin_call()
            .unwrap(),
            KeysCommand::List {
                tenant: id(),
                target: target(),
            }
            .admin_call()
            .unwrap(),
            KeysCommand::Revoke {
                key_id: id(),
                target: target(),
            }
            .admin_call()
            .unwrap(),
            KeysCommand::Rotate {
                key_id: id(),
                grace_seconds: 0,
                target: target(),
            }
            .admin_call()
            .unwrap(),
        ];
        let mut paths = Vec::new();
        for call in &calls {
            let params: Vec<&str> = call.params.iter().map(String::as_str).collect();
            let (method, path) = route_path(call.route, &params).unwrap();
            paths.push(format!("{method} {path}"));
        }
        assert!(
            paths.contains(&"POST /admin/v1/keys/acme/rotate".to_owned()),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"PATCH /admin/v1/tenants/acme".to_owned()),
            "{paths:?}"
        );
        assert!(route_path(("GET", "/admin/v1/nope"), &[]).is_err());
    }
}
