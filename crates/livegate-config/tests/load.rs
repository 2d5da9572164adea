use std::io::Write;

use livegate_config::{ConfigError, load};

fn file(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(contents.as_bytes()).unwrap();
    f
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn problems(r: Result<livegate_config::Config, ConfigError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn no_file_no_env_is_the_embedded_default() {
    let c = load(None, env(&[])).unwrap();
    assert!(c.is_embedded_default());
    assert_eq!(c.server.body_limit_bytes, 10 * 1024 * 1024);
    assert_eq!(c.images.formats, ["jpeg", "png", "webp"]);
    assert_eq!((c.images.min_width, c.images.max_width), (192, 8192));
}

#[test]
fn unknown_key_in_file_is_named() {
    let f = file("[vendor]\ntimeout_msec = 5\n");
    let msg = problems(load(Some(f.path()), env(&[])));
    assert!(msg.contains("timeout_msec"), "{msg}");
}

#[test]
fn unknown_section_is_named() {
    let f = file("[vendorr]\nbase_url = \"https://x\"\n");
    let msg = problems(load(Some(f.path()), env(&[])));
    assert!(msg.contains("vendorr"), "{msg}");
}

#[test]
fn env_overrides_file() {
    let f = file("[vendor]\ntimeout_ms = 5000\n");
    let c = load(
        Some(f.path()),
        env(&[
            ("LIVEGATE_VENDOR__TIMEOUT_MS", "750"),
            ("LIVEGATE_SERVER__LISTEN", "127.0.0.1:18080"),
            ("LIVEGATE_CONFIG", "ignored.toml"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(c.vendor.timeout_ms, 750);
    assert_eq!(c.server.listen.port(), 18080);
}

#[test]
fn unknown_env_key_is_named() {
    let msg = problems(load(None, env(&[("LIVEGATE_VENDOR__TIMEOUT", "1")])));
    assert!(msg.contains("timeout"), "{msg}");
}

#[test]
fn secrets_come_from_files_and_are_redacted() {
    let key = file("vendor-key-from-file\n");
    let pepper = file("0123456789abcdef0123\n");
    let cfg = format!(
        "[vendor]\nbase_url = \"https://vendor.example\"\napi_key_file = {:?}\n[auth]\npepper_file = {:?}\n",
        key.path(),
        pepper.path()
    );
    let f = file(&cfg);
    let c = load(Some(f.path()), env(&[])).unwrap();
    assert_eq!(
        c.vendor.api_key.as_ref().unwrap().expose(),
        "vendor-key-from-file"
    );
    assert_eq!(
        c.auth.pepper.as_ref().unwrap().expose(),
        "0123456789abcdef0123"
    );
    let printed = toml::to_string(&c).unwrap();
    assert!(!printed.contains("vendor-key-from-file"), "{printed}");
    assert!(!printed.contains("0123456789abcdef0123"), "{printed}");
    assert!(printed.contains("[redacted]"));
    assert!(!format!("{c:?}").contains("vendor-key-from-file"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let f = file(
        r#"
[server]
body_limit_bytes = 0
[vendor]
base_url = "ftp://vendor.example"
[images]
formats = ["jpeg", "bmp"]
min_width = 9000
[[tenants]]
id = "Bad Id"
images = { formats = [] }
[[tenants.keys]]
id = "short"
hash = "nothex"
expires_at = "next tuesday"
"#,
    );
    let msg = problems(load(Some(f.path()), env(&[])));
    for needle in [
        "body_limit_bytes",
        "scheme must be http or https",
        "vendor.api_key",
        "auth.pepper",
        "\"bmp\"",
        "minimum dimensions exceed",
        "tenants[0].id",
        "tenants[0].images.formats must name at least one format",
        "tenants[0].keys[0].id",
        "tenants[0].keys[0].hash",
        "tenants[0].keys[0].expires_at",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
}

#[test]
fn inline_and_file_secret_together_is_an_error() {
    let key = file("k\n");
    let cfg = format!(
        "[vendor]\napi_key = \"inline\"\napi_key_file = {:?}\n",
        key.path()
    );
    let f = file(&cfg);
    let msg = problems(load(Some(f.path()), env(&[])));
    assert!(msg.contains("both set"), "{msg}");
    assert!(
        !msg.contains("inline"),
        "a secret value leaked into an error: {msg}"
    );
}
