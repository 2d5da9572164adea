//! The command line: check-config, keys, tenants, stub.

mod common;

use std::process::Output;

use common::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    run_cli(args, env)
}

fn text(o: &Output) -> String {
    output_text(o)
}

fn repo(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_example_config_is_valid() {
    let o = run(
        &[
            "check-config",
            "--config",
            &repo("config/livegate.example.toml"),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("[server]") && out.contains("body_limit_bytes = 10485760"),
        "{out}"
    );
    assert!(out.contains("EMBEDDED DEFAULT"));
}

#[test]
fn check_config_redacts_secrets_and_applies_env() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("vendor-key");
    std::fs::write(&key_file, "vendor-secret-from-file\n").unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[vendor]\nbase_url = \"https://vendor.example\"\napi_key_file = {:?}\n[auth]\npepper = \"pepper-value-0123456789\"\n",
            key_file
        ),
    )
    .unwrap();
    let o = run(
        &["check-config", "--config", cfg.to_str().unwrap()],
        &[("LIVEGATE_VENDOR__TIMEOUT_MS", "1234")],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("timeout_ms = 1234"), "{out}");
    assert!(out.contains("[redacted]"));
    assert!(!out.contains("vendor-secret-from-file"), "{out}");
    assert!(!out.contains("pepper-value-0123456789"), "{out}");
}

#[test]
fn check_config_names_unknown_keys_and_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[server]\nlisten_addr = \"0.0.0.0:1\"\n").unwrap();
    let o = run(&["check-config", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("listen_addr"), "{}", text(&o));

    std::fs::write(
        &cfg,
        "[vendor]\nbase_url = \"https://v.example\"\n[images]\nmin_width = 0\n",
    )
    .unwrap();
    let o = run(&["check-config", "--config", cfg.to_str().unwrap()], &[]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2));
    for needle in ["vendor.api_key", "auth.pepper", "min_width"] {
        assert!(out.contains(needle), "{needle} missing:\n{out}");
    }

    let o = run(&["check-config"], &[("LIVEGATE_SERVER__NOPE", "1")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("nope"), "{}", text(&o));
}

/// Acceptance of issue 22: a file with two unknown keys and one value of
/// the wrong type gets all three named, each once, from the real binary.
#[test]
fn check_config_names_all_three_problems_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[server]\nbogus = 1\n[vendor]\ntimeout_ms = \"soon\"\n[audit]\nsinkk = \"file\"\n",
    )
    .unwrap();
    let o = run(&["check-config", "--config", cfg.to_str().unwrap()], &[]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    for needle in [
        "unknown key `server.bogus`",
        "vendor.timeout_ms: expected",
        "unknown key `audit.sinkk`",
    ] {
        assert_eq!(out.matches(needle).count(), 1, "{needle:?} once in:\n{out}");
    }
    assert!(
        !out.contains("bogus.bogus") && !out.contains("sinkk.sinkk"),
        "{out}"
    );
    assert!(!out.contains("soon"), "a value in: {out}");
}

/// Numbers are printed as written: `0.1`, not the nearest f32 widened.
#[test]
fn check_config_prints_floats_as_written() {
    let o = run(
        &["check-config"],
        &[("LIVEGATE_SERVER__TENANT_BODY_SHARE", "0.3")],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("retry_budget_ratio = 0.1\n"), "{out}");
    assert!(out.contains("tenant_body_share = 0.3\n"), "{out}");
    assert!(out.contains("timeout_ms = 10000\n"), "{out}");
    assert!(out.contains("lookup_retention_hours = 720\n"), "{out}");
}

/// The operator's flow: `keys new` prints a key and config lines; a
/// gateway configured with those lines accepts that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_new_makes_a_key_the_gateway_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.toml");
    std::fs::write(&base, format!("[auth]\npepper = \"{PEPPER}\"\n")).unwrap();
    let o = run(
        &[
            "keys",
            "new",
            "--config",
            base.to_str().unwrap(),
            "--tenant",
            "acme",
        ],
        &[],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", text(&o));
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("key = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("key line")
        .to_owned();
    assert!(key.starts_with("lvg_"));
    let snippet = &out[out.find("[[tenants.keys]]").expect("config lines")..];
    assert!(
        !snippet.contains(&key),
        "the config lines must not hold the key"
    );

    // No vendor here: the built-in simulator stands in, enabled explicitly
    // (tenants without a vendor are refused otherwise).
    let cfg = format!(
        "[auth]\npepper = \"{PEPPER}\"\n[simulator]\nenabled = true\n[[tenants]]\nid = \"acme\"\n{snippet}"
    );
    let gw = Proc::serve(Some(&cfg), &[]);
    let r = post_raw_jpeg(&gw.url("/modules/liveness"), key.as_str()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // tenants list shows the key id, never the key or its hash.
    let path = dir.path().join("full.toml");
    std::fs::write(&path, &cfg).unwrap();
    let o = run(
        &["tenants", "list", "--config", path.to_str().unwrap()],
        &[],
    );
    let listed = text(&o);
    let kid = key.split('_').nth(1).unwrap();
    assert!(listed.contains("acme") && listed.contains(kid), "{listed}");
    assert!(!listed.contains(&key));

    // Without a pepper there is no way to make a usable hash.
    let o = run(&["keys", "new", "--tenant", "acme"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("auth.pepper"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stub_runs_as_its_own_strict_server() {
    let stub = Proc::stub(&[("LIVEGATE_SIMULATOR__API_KEY", "stub-key-123")]);
    let url = stub.url("/modules/liveness");
    let jpeg = b64(&testdata("face-320x240.jpg"));
    let h = [
        ("content-type", "application/json"),
        ("x-api-key", "stub-key-123"),
    ];
    let ok = send(&url, "POST", &h, face_json(&jpeg)).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let tx = ok.json()["transactionId"].as_str().unwrap().to_owned();
    assert!(
        tx.len() == 13
            && tx
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    let prefixed = send(
        &url,
        "POST",
        &h,
        face_json(&format!("data:image/jpeg;base64,{jpeg}")),
    )
    .await;
    assert_eq!(prefixed.error_code(), 1017);
    let missing = send(&url, "POST", &h, "{}").await;
    assert_eq!(missing.error_code(), 1016);
    let wrong = send(
        &url,
        "POST",
        &[("content-type", "application/json"), ("x-api-key", "nope")],
        face_json(&jpeg),
    )
    .await;
    assert_eq!(wrong.status, 401);
}

/// `livegate tenants …` / `keys …` drive a running gateway's admin API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_the_admin_api() {
    let gw = Proc::serve(None, &[]);
    let token = gw
        .output()
        .split_whitespace()
        .find(|w| w.starts_with("lvgadm_"))
        .unwrap()
        .to_owned();
    let url = gw.ops_url("");
    let env = [
        ("LIVEGATE_ADMIN_URL", url.as_str()),
        ("LIVEGATE_ADMIN_TOKEN", token.as_str()),
    ];
    let admin = |args: &[&str]| {
        let o = run(args, &env);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = admin(&[
        "tenants", "create", "--id", "acme", "--name", "ACME", "--burst", "7",
    ]);
    assert!(
        out.contains("acme") && out.contains("ACME") && out.contains('7'),
        "{out}"
    );
    let out = admin(&["tenants", "list"]);
    assert!(out.lines().count() == 3 && out.contains("dev"), "{out}");

    // The key is printed once, by `issue`; it works on the public listener.
    let out = admin(&["keys", "issue", "--tenant", "acme", "--output", "json"]);
    let issued: serde_json::Value = serde_json::from_str(&out).unwrap();
    let key = issued["key"].as_str().unwrap().to_owned();
    let kid = issued["keyId"].as_str().unwrap().to_owned();
    let r = post_raw_jpeg(&gw.url("/modules/liveness"), &key).await;
    assert_eq!(r.status, 200);
    let out = admin(&["keys", "list", "--tenant", "acme"]);
    assert!(
        out.contains(&kid) && out.contains("active") && !out.contains(&key),
        "{out}"
    );
    let out = admin(&["keys", "revoke", &kid]);
    assert!(out.contains("revoked"), "{out}");
    let r = post_raw_jpeg(&gw.url("/modules/liveness"), &key).await;
    assert_eq!(r.error_code(), 40103);
    let out = admin(&["tenants", "disable", "acme", "--output", "json"]);
    assert!(out.contains("\"disabled\": true"), "{out}");

    // The API's refusals come back as errors, exit code 2.
    let o = run(&["tenants", "get", "nobody"], &env);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no such tenant"), "{}", text(&o));
    let o = run(
        &["tenants", "list"],
        &[
            ("LIVEGATE_ADMIN_URL", url.as_str()),
            ("LIVEGATE_ADMIN_TOKEN", "wrong-admin-token-0123"),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("missing or invalid admin token"),
        "{}",
        text(&o)
    );
}
