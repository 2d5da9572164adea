//! `[[admin.tokens]]` and `[ops] metrics_token`: loading, files, every
//! problem named (never a value), and redaction.

use std::io::Write;

use livegate_config::{AdminScope, load};

fn file(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(contents.as_bytes()).unwrap();
    f
}

const BASE: &str = "[simulator]\nenabled = true\n";

#[test]
fn scoped_tokens_load_with_their_scopes_and_files() {
    let secret = file("support-token-0123456789\n");
    let f = file(&format!(
        r#"{BASE}
[ops]
metrics_token = "metrics-token-0123456789"

[admin]
token = "admin-token-0123456789"

[[admin.tokens]]
name = "dashboard"
token = "read-token-0123456789"
scopes = ["read"]

[[admin.tokens]]
name = "support"
token_file = {:?}
scopes = ["read", "keys"]
tenants = ["acme", "globex"]
"#,
        secret.path()
    ));
    let c = load(Some(f.path()), Vec::new()).unwrap();
    let t = &c.admin.tokens;
    assert_eq!(t.len(), 2);
    assert_eq!(
        (t[0].name.as_str(), &t[0].scopes[..]),
        ("dashboard", &[AdminScope::Read][..])
    );
    assert_eq!(t[1].scopes, [AdminScope::Read, AdminScope::Keys]);
    assert_eq!(
        t[1].tenants.as_deref(),
        Some(&["acme".to_owned(), "globex".to_owned()][..])
    );
    // From the file, without the newline the writer added.
    assert_eq!(
        t[1].token.as_ref().unwrap().expose(),
        "support-token-0123456789"
    );
    assert_eq!(
        c.ops.metrics_token.as_ref().unwrap().expose(),
        "metrics-token-0123456789"
    );
    assert!(c.admin.any_token());

    // Printed (as check-config does), no value shows.
    let printed = toml::to_string(&c).unwrap();
    for secret in [
        "admin-token-0123456789",
        "read-token-0123456789",
        "support-token-0123456789",
        "metrics-token-0123456789",
    ] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(
        printed.contains("dashboard") && printed.contains("[redacted]"),
        "{printed}"
    );
}

#[test]
fn the_metrics_token_comes_from_the_environment_byte_for_byte() {
    let c = load(
        None,
        vec![(
            "LIVEGATE_OPS__METRICS_TOKEN".to_owned(),
            "0000000000000000007".to_owned(),
        )],
    )
    .unwrap();
    assert_eq!(
        c.ops.metrics_token.unwrap().expose(),
        "0000000000000000007",
        "a secret is never parsed as a number"
    );
}

#[test]
fn every_token_problem_is_named_at_once_without_a_value() {
    let f = file(&format!(
        r#"{BASE}
[ops]
metrics_token = "short-metrics"

[admin]
token = "same-token-0123456789"

[[admin.tokens]]
name = "dup"
token = "same-token-0123456789"
scopes = ["read"]

[[admin.tokens]]
name = "dup"
token = "short"
scopes = []

[[admin.tokens]]
name = "no value"
scopes = ["keys"]
tenants = []

[[admin.tokens]]
name = "reader"
token = "reader-token-0123456789"
scopes = ["read"]
tenants = ["acme"]

[[admin.tokens]]
name = "boss"
token = "boss-token-0123456789"
scopes = ["admin"]
tenants = ["acme"]
"#
    ));
    let msg = load(Some(f.path()), Vec::new()).unwrap_err().to_string();
    for expected in [
        "admin.tokens[0].token is the same as another admin token",
        "admin.tokens[1].name `dup` is used twice",
        "admin.tokens[1].token must be at least 16 bytes",
        "admin.tokens[1].scopes must name at least one of read, keys, admin",
        "admin.tokens[2].name must be 1 to 64 letters",
        "admin.tokens[2] needs token or token_file",
        "admin.tokens[2].tenants is empty",
        "admin.tokens[3].tenants limits the keys scope, which this token does not have",
        "admin.tokens[4].tenants cannot limit a token of scope admin",
        "ops.metrics_token must be at least 16 bytes",
    ] {
        assert!(msg.contains(expected), "missing {expected:?} in:\n{msg}");
    }
    for value in ["same-token-0123456789", "short-metrics", "\"short\""] {
        assert!(!msg.contains(value), "a value is printed:\n{msg}");
    }
}

#[test]
fn unknown_scopes_and_keys_are_refused() {
    let f = file(&format!(
        "{BASE}\n[[admin.tokens]]\nname = \"x\"\ntoken = \"x-token-0123456789\"\nscopes = [\"write\"]\n"
    ));
    let msg = load(Some(f.path()), Vec::new()).unwrap_err().to_string();
    assert!(msg.contains("admin.tokens"), "{msg}");
    let f = file(&format!(
        "{BASE}\n[[admin.tokens]]\nname = \"x\"\ntoken = \"x-token-0123456789\"\nscopes = [\"read\"]\nscope = \"read\"\n"
    ));
    let msg = load(Some(f.path()), Vec::new()).unwrap_err().to_string();
    assert!(msg.contains("scope"), "{msg}");
}

#[test]
fn scoped_tokens_alone_are_production_settings() {
    let f = file(
        "[[admin.tokens]]\nname = \"x\"\ntoken = \"x-token-0123456789\"\nscopes = [\"read\"]\n",
    );
    let c = load(Some(f.path()), Vec::new()).unwrap();
    let problems = c.serve_problems();
    assert!(
        problems.iter().any(|p| p.contains("admin.token")),
        "{problems:?}"
    );
}
