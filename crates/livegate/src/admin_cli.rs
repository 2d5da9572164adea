//! `livegate tenants …` and `livegate keys …` against a running gateway's
//! admin API: the URL and token from flags or `LIVEGATE_ADMIN_URL` /
//! `LIVEGATE_ADMIN_TOKEN`; a table for people by default, `--output json`
//! for scripts (the admin API's own JSON, unchanged).
//!
//! Plain HTTP: the operations listener is meant for loopback or a port
//! forward (`kubectl port-forward`), never the open network.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
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
        .find(|r| **r == route)
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
        bail!(
            "HTTP {status}: {} (errorCode {})",
            json["message"].as_str().unwrap_or("?"),
            json["errorCode"]
        );
    }
    Ok(json)
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
