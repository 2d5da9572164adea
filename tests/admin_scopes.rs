//! Scoped admin tokens, the metrics token and the admin API's body bound,
//! against the real binary on real sockets: every admin route with every
//! scope, tenant-limited `keys` tokens, `/metrics` behind its token, and a
//! 2 MiB admin body answered in the documented JSON shape.

mod common;

use common::*;
use livegate_admin::{ROUTES, Scope};

const ADMIN: &str = "admin-token-0123456789";
const READ: &str = "read-token-0123456789";
const KEYS: &str = "keys-token-0123456789";
const ACME_KEYS: &str = "acme-keys-token-0123456789";
const READ_KEYS: &str = "read-keys-token-0123456789";
const METRICS: &str = "metrics-token-0123456789";

/// A gateway on the built-in simulator with one token per kind of scope
/// (one of them from a file, as Kubernetes secrets are mounted).
fn start(dir: &tempfile::TempDir) -> Proc {
    let file = dir.path().join("read-keys-token");
    std::fs::write(&file, format!("{READ_KEYS}\n")).unwrap();
    let config = format!(
        r#"
[simulator]
enabled = true

[ops]
metrics_token = "{METRICS}"

[admin]
token = "{ADMIN}"

[[admin.tokens]]
name = "dashboard"
token = "{READ}"
scopes = ["read"]

[[admin.tokens]]
name = "issuer"
token = "{KEYS}"
scopes = ["keys"]

[[admin.tokens]]
name = "acme-issuer"
token = "{ACME_KEYS}"
scopes = ["keys"]
tenants = ["acme"]

[[admin.tokens]]
name = "support"
token_file = {file:?}
scopes = ["read", "keys"]
"#
    );
    Proc::serve(Some(&config), &[])
}

async fn call(gw: &Proc, token: Option<&str>, method: &str, path: &str, body: &str) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    send(&gw.ops_url(path), method, &headers, body.to_owned()).await
}

fn refused(r: &Resp, status: u16, code: i64, what: &str) {
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (status, code),
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.headers["content-type"], "application/json", "{what}");
    assert_eq!(
        r.json()["requestId"].as_str(),
        r.headers["x-request-id"].to_str().ok(),
        "{what}"
    );
}

/// A new key of `tenant`, issued with the admin token: its id.
async fn new_key(gw: &Proc, tenant: &str) -> String {
    let r = call(
        gw,
        Some(ADMIN),
        "POST",
        &format!("/admin/v1/tenants/{tenant}/keys"),
        "",
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["keyId"].as_str().unwrap().to_owned()
}

/// The tenants and both test tenants' keys, as the admin token sees them.
async fn snapshot(gw: &Proc) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    for path in [
        "/admin/v1/tenants",
        "/admin/v1/tenants/acme/keys",
        "/admin/v1/tenants/other/keys",
    ] {
        all.push(call(gw, Some(ADMIN), "GET", path, "").await.json());
    }
    all
}

/// Every admin route with every token: a token with the route's scope gets
/// past the access layer (and its request does what it says); one without
/// gets 403 40302 and changes nothing; no token or a wrong one gets 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_with_every_scope() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&dir);
    for id in ["acme", "other"] {
        let r = call(
            &gw,
            Some(ADMIN),
            "POST",
            "/admin/v1/tenants",
            &format!(r#"{{"id":"{id}"}}"#),
        )
        .await;
        assert_eq!(r.status, 201);
    }
    // (token, its scopes, the tenants its keys scope is limited to)
    let tokens: &[(&str, &[Scope], Option<&str>)] = &[
        (ADMIN, &[Scope::Admin], None),
        (READ, &[Scope::Read], None),
        (KEYS, &[Scope::Keys], None),
        (ACME_KEYS, &[Scope::Keys], Some("acme")),
        (READ_KEYS, &[Scope::Read, Scope::Keys], None),
    ];
    let mut tenant_seq = 0;
    for route in ROUTES {
        for tenant in ["acme", "other"] {
            for (token, scopes, only) in tokens {
                let allowed = scopes.contains(&Scope::Admin)
                    || (scopes.contains(&route.scope)
                        && (route.scope != Scope::Keys || only.is_none_or(|t| t == tenant)));
                // Each call gets a fresh object where it would consume one.
                let kid = new_key(&gw, tenant).await;
                let path = route
                    .path
                    .replace("{id}", tenant)
                    .replace("{keyId}", &kid)
                    .replace("{transactionId}", "abcdefghijklm");
                let body = match (route.method, route.path) {
                    ("POST", "/admin/v1/tenants") => {
                        tenant_seq += 1;
                        format!(r#"{{"id":"t{tenant_seq}"}}"#)
                    }
                    ("PATCH", _) => r#"{"name":"renamed"}"#.to_owned(),
                    (_, p) if p.ends_with("/rotate") => r#"{"graceSeconds":60}"#.to_owned(),
                    _ => String::new(),
                };
                let what = format!("{} {path} with {token}", route.method);
                let before = snapshot(&gw).await;
                let r = call(&gw, Some(token), route.method, &path, &body).await;
                if allowed {
                    let s = r.status.as_u16();
                    // The audit lookup has no Redis sink here: its own 404.
                    let ok = if route.path.starts_with("/admin/v1/audit/") {
                        s == 404 && r.error_code() == 40405
                    } else {
                        (200..300).contains(&s)
                    };
                    assert!(ok, "{what}: {s} {}", String::from_utf8_lossy(&r.body));
                } else {
                    refused(&r, 403, 40302, &what);
                    assert_eq!(before, snapshot(&gw).await, "{what} changed something");
                }
            }
        }
        // Without a token, or with one that is not configured: 401.
        let path = route
            .path
            .replace("{id}", "acme")
            .replace("{keyId}", "abcdefabcdef")
            .replace("{transactionId}", "abcdefghijklm");
        for token in [None, Some("not-a-token-0123456789"), Some(METRICS)] {
            let r = call(&gw, token, route.method, &path, "{}").await;
            refused(
                &r,
                401,
                40106,
                &format!("{} {path} with {token:?}", route.method),
            );
        }
    }
    // Refused calls changed nothing: the only tenants are the admin's.
    let r = call(&gw, Some(READ), "GET", "/admin/v1/tenants", "").await;
    let tenants = r.json();
    let made: Vec<&str> = tenants
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str())
        .filter(|id| id.starts_with('t'))
        .collect();
    assert_eq!(
        made.len(),
        2,
        "only the admin token made tenants: {tenants}"
    );
    // Admin actions name the token that did them, never its value.
    let out = gw.output();
    assert!(out.contains("acme-issuer"), "{out}");
    for secret in [ADMIN, READ, KEYS, ACME_KEYS, READ_KEYS, METRICS] {
        assert!(!out.contains(secret), "a token was logged");
    }
}

/// The plain case the issue names: a read token cannot issue keys, and its
/// refusal leaves no key behind; a keys token limited to a tenant cannot
/// act on another tenant's keys, even by key id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_cannot_issue_keys() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&dir);
    for id in ["acme", "other"] {
        call(
            &gw,
            Some(ADMIN),
            "POST",
            "/admin/v1/tenants",
            &format!(r#"{{"id":"{id}"}}"#),
        )
        .await;
    }
    let r = call(&gw, Some(READ), "POST", "/admin/v1/tenants/acme/keys", "").await;
    refused(&r, 403, 40302, "read token issuing");
    assert!(r.json().get("key").is_none());
    let r = call(&gw, Some(READ), "GET", "/admin/v1/tenants/acme/keys", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!([]), "no key was made");

    let theirs = new_key(&gw, "other").await;
    for (method, path, body) in [
        ("POST", "/admin/v1/tenants/other/keys".to_owned(), ""),
        ("POST", format!("/admin/v1/keys/{theirs}/revoke"), ""),
        (
            "POST",
            format!("/admin/v1/keys/{theirs}/rotate"),
            r#"{"graceSeconds":0}"#,
        ),
    ] {
        let r = call(&gw, Some(ACME_KEYS), method, &path, body).await;
        refused(&r, 403, 40302, &path);
    }
    let r = call(&gw, Some(ADMIN), "GET", "/admin/v1/tenants/other/keys", "").await;
    let keys = r.json();
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys[0]["state"], "active", "{keys}");
    // Its own tenant's keys it may issue; a key that exists nowhere is 404.
    let r = call(
        &gw,
        Some(ACME_KEYS),
        "POST",
        "/admin/v1/tenants/acme/keys",
        "",
    )
    .await;
    assert_eq!(r.status, 201);
    let r = call(
        &gw,
        Some(ACME_KEYS),
        "POST",
        "/admin/v1/keys/abcdefabcdef/revoke",
        "",
    )
    .await;
    refused(&r, 404, 40403, "unknown key");
}

/// `[ops] metrics_token`: `/metrics` answers only with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_metrics_token_when_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&dir);
    for auth in [
        None,
        Some("Bearer not-the-metrics-token".to_owned()),
        Some(format!("Bearer {ADMIN}")),
        Some(format!("Basic {METRICS}")),
    ] {
        let mut h = vec![];
        if let Some(a) = &auth {
            h.push(("authorization", a.as_str()));
        }
        let r = send(&gw.ops_url("/metrics"), "GET", &h, Vec::new()).await;
        refused(&r, 401, 40107, &format!("{auth:?}"));
        assert!(!String::from_utf8_lossy(&r.body).contains("livegate_"));
    }
    let auth = format!("Bearer {METRICS}");
    let r = send(
        &gw.ops_url("/metrics"),
        "GET",
        &[("authorization", auth.as_str())],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("livegate_"));
    // The metrics token is no admin token.
    let r = call(&gw, Some(METRICS), "GET", "/admin/v1/tenants", "").await;
    refused(&r, 401, 40106, "metrics token on the admin API");

    // Without a metrics token, /metrics is open as before.
    let open = Proc::serve(None, &[]);
    let r = send(&open.ops_url("/metrics"), "GET", &[], Vec::new()).await;
    assert_eq!(r.status, 200);
}

/// Admin bodies are bounded at 2 MiB, and a larger one is refused in the
/// documented shape (413 41301, JSON, with the request id) whether it
/// declares its length or streams; one at the bound is read and judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_admin_body_gets_the_json_error() {
    let gw = Proc::serve(None, &[]);
    let token = gw
        .output()
        .split_whitespace()
        .find(|w| w.starts_with("lvgadm_"))
        .unwrap()
        .to_owned();
    let auth = format!("Bearer {token}");
    let limit = livegate_admin::MAX_BODY;
    assert_eq!(limit, 2 * 1024 * 1024);

    let over = vec![b' '; limit + 1];
    for path in [
        "/admin/v1/tenants",
        "/admin/v1/tenants/acme",
        "/admin/v1/tenants/acme/keys",
        "/admin/v1/keys/abcdefabcdef/rotate",
    ] {
        let method = if path == "/admin/v1/tenants/acme" {
            "PATCH"
        } else {
            "POST"
        };
        let r = send(
            &gw.ops_url(path),
            method,
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            over.clone(),
        )
        .await;
        refused(&r, 413, 41301, path);
    }

    // Streamed (chunked, no Content-Length): refused once past the bound.
    let chunk = vec![b' '; 64 * 1024];
    let chunks: Vec<&[u8]> = std::iter::repeat_n(chunk.as_slice(), 33).collect();
    let head = format!(
        "POST /admin/v1/tenants HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-type: application/json\r\nx-request-id: big-1\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    let framed = chunks_as_chunked(&chunks);
    let framed: Vec<&[u8]> = framed.iter().map(Vec::as_slice).collect();
    let raw = raw_exchange(gw.ops_addr.unwrap(), &head, &framed).await;
    assert!(
        raw.starts_with("HTTP/1.1 413"),
        "{}",
        &raw[..raw.len().min(300)]
    );
    assert!(raw.contains("application/json"), "{raw}");
    assert!(raw.contains(r#""errorCode":41301"#), "{raw}");
    assert!(raw.contains(r#""requestId":"big-1""#), "{raw}");

    // Exactly at the bound: read, and refused for what it is.
    let at = vec![b'x'; limit];
    let r = send(
        &gw.ops_url("/admin/v1/tenants"),
        "POST",
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        at,
    )
    .await;
    refused(&r, 400, 40007, "a body at the bound");

    // Without the token nothing is read: 401, never 413.
    let r = send(
        &gw.ops_url("/admin/v1/tenants"),
        "POST",
        &[("content-type", "application/json")],
        over,
    )
    .await;
    refused(&r, 401, 40106, "no token, big body");

    // A path parameter that cannot be decoded names nothing: the route's
    // JSON 404, not the framework's text.
    let r = send(
        &gw.ops_url("/admin/v1/tenants/%FF"),
        "GET",
        &[("authorization", auth.as_str())],
        Vec::new(),
    )
    .await;
    refused(&r, 404, 40402, "undecodable tenant id");
    let r = send(
        &gw.ops_url("/admin/v1/keys/%FF%FE/revoke"),
        "POST",
        &[("authorization", auth.as_str())],
        Vec::new(),
    )
    .await;
    refused(&r, 404, 40403, "undecodable key id");
}

/// HTTP/1.1 chunked framing of `chunks`, with the final empty chunk.
fn chunks_as_chunked(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = chunks
        .iter()
        .map(|c| {
            let mut framed = format!("{:x}\r\n", c.len()).into_bytes();
            framed.extend_from_slice(c);
            framed.extend_from_slice(b"\r\n");
            framed
        })
        .collect();
    out.push(b"0\r\n\r\n".to_vec());
    out
}

/// `check-config` prints the tokens' names and scopes, never their values.
#[test]
fn check_config_redacts_the_new_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[simulator]\nenabled = true\n[ops]\nmetrics_token = \"{METRICS}\"\n[admin]\ntoken = \"{ADMIN}\"\n[[admin.tokens]]\nname = \"dashboard\"\ntoken = \"{READ}\"\nscopes = [\"read\"]\n[[admin.tokens]]\nname = \"acme-issuer\"\ntoken = \"{ACME_KEYS}\"\nscopes = [\"keys\"]\ntenants = [\"acme\"]\n"
        ),
    )
    .unwrap();
    let o = run_cli(&["check-config", "--config", cfg.to_str().unwrap()], &[]);
    let out = output_text(&o);
    assert!(o.status.success(), "{out}");
    for secret in [METRICS, ADMIN, READ, ACME_KEYS] {
        assert!(!out.contains(secret), "{out}");
    }
    for shown in [
        "dashboard",
        "acme-issuer",
        "\"keys\"",
        "metrics_token = \"[redacted]\"",
    ] {
        assert!(out.contains(shown), "{shown} missing:\n{out}");
    }
}

/// The admin CLI works with a scoped token whose scope covers the command,
/// and says which scope a refused command needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_with_a_scoped_token() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&dir);
    let url = format!("http://{}", gw.ops_addr.unwrap());
    let cli = |args: &[&str], token: &str| {
        let o = run_cli(
            args,
            &[
                ("LIVEGATE_ADMIN_URL", url.as_str()),
                ("LIVEGATE_ADMIN_TOKEN", token),
            ],
        );
        (o.status.success(), output_text(&o))
    };
    let (ok, out) =
        tokio::task::block_in_place(|| cli(&["tenants", "create", "--id", "acme"], ADMIN));
    assert!(ok, "{out}");
    let (ok, out) =
        tokio::task::block_in_place(|| cli(&["keys", "issue", "--tenant", "acme"], ACME_KEYS));
    assert!(ok, "{out}");
    assert!(out.contains("lvg_"), "the key is printed once: {out}");
    let (ok, out) =
        tokio::task::block_in_place(|| cli(&["keys", "list", "--tenant", "acme"], READ));
    assert!(ok && out.contains("active"), "{out}");
    let (ok, out) =
        tokio::task::block_in_place(|| cli(&["tenants", "create", "--id", "globex"], KEYS));
    assert!(!ok, "{out}");
    assert!(
        out.contains("40302") && out.contains("scope `admin`"),
        "{out}"
    );
    let (ok, out) =
        tokio::task::block_in_place(|| cli(&["keys", "issue", "--tenant", "acme"], READ));
    assert!(!ok && out.contains("scope `keys`"), "{out}");
    assert!(!out.contains(READ), "the token is never printed: {out}");
}
