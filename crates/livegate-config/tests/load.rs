use std::io::Write;

use livegate_config::{ConfigError, LogFormat, load};

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
    let formats: Vec<&str> = c.images.formats.iter().map(|f| f.as_str()).collect();
    assert_eq!(formats, ["jpeg", "png", "webp"]);
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
    assert_eq!(c.vendor.timeout, std::time::Duration::from_millis(750));
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

#[test]
fn values_arrive_as_domain_types() {
    let f = file(
        r#"
[auth]
pepper = "0123456789abcdef0123"
[log]
format = "json"
[images]
formats = ["jpg", "PNG"]
[[tenants]]
id = "acme"
images = { min_width = 640 }
[[tenants.keys]]
id = "abc123def456"
hash = "d211349efcccf952875d7ff5f7d8d34acc402b317dc0726e430f475283387079"
expires_at = "2027-01-15T08:00:00Z"
"#,
    );
    let c = load(Some(f.path()), env(&[])).unwrap();
    assert_eq!(c.log.format, LogFormat::Json);
    let formats: Vec<&str> = c.images.formats.iter().map(|f| f.as_str()).collect();
    assert_eq!(formats, ["jpeg", "png"]);
    let t = &c.tenants[0];
    assert_eq!(c.images.with(&t.images).min_width, 640);
    assert_eq!(c.images.with(&t.images).min_height, 192);
    let k = &t.keys[0];
    assert_eq!(k.id.as_str(), "abc123def456");
    assert_eq!(k.expires_at.unwrap().to_string(), "2027-01-15T08:00:00Z");
}

#[test]
fn errors_name_the_key_and_file_never_a_source_location_or_value() {
    let f = file(
        "[vendor]
timeout_ms = \"soon-secret-value\"
[admin]
token = 1
",
    );
    let msg = problems(load(Some(f.path()), env(&[])));
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    assert!(msg.contains("admin"), "{msg}");
    assert!(!msg.contains(".rs:"), "a source location in: {msg}");
    assert!(!msg.contains("figment"), "{msg}");
    assert!(!msg.contains("soon-secret-value"), "a value in: {msg}");

    let f = file(
        "[vendor]
timeout_ms = \"soon-secret-value\"
",
    );
    let msg = problems(load(Some(f.path()), env(&[])));
    assert!(msg.contains("vendor.timeout_ms"), "{msg}");
    assert!(!msg.contains("soon-secret-value"), "a value in: {msg}");

    let msg = problems(load(None, env(&[("LIVEGATE_LOG__FORMAT", "xml-secret")])));
    assert!(msg.contains("log.format"), "{msg}");
    assert!(!msg.contains("xml-secret"), "{msg}");
    let msg = problems(load(
        None,
        env(&[("LIVEGATE_VENDOR__TIMEOUT_MS", "later-secret")]),
    ));
    assert!(msg.contains("LIVEGATE_VENDOR__TIMEOUT_MS"), "{msg}");
    assert!(!msg.contains("later-secret"), "{msg}");
}

#[test]
fn blocking_threads_default_to_two_per_cpu_and_are_bounded() {
    let c = load(None, env(&[])).unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(c.server.blocking_threads, None);
    assert_eq!(c.server.blocking_threads(), 2 * cpus);

    let c = load(None, env(&[("LIVEGATE_SERVER__BLOCKING_THREADS", "3")])).unwrap();
    assert_eq!(c.server.blocking_threads(), 3);

    for bad in ["0", "513"] {
        let msg = problems(load(
            None,
            env(&[("LIVEGATE_SERVER__BLOCKING_THREADS", bad)]),
        ));
        assert!(
            msg.contains("server.blocking_threads must be between 1 and 512"),
            "{bad}: {msg}"
        );
    }
}

#[test]
fn audit_sink_is_one_name_or_a_list() {
    use livegate_config::SinkKind as AuditSink;
    let f =
        file("[audit]\nsink = [\"file\", \"otlp\"]\npath = \"/var/log/livegate/audit.jsonl\"\n");
    let c = load(Some(f.path()), env(&[])).unwrap();
    assert_eq!(c.audit.sink.kinds(), [AuditSink::File, AuditSink::Otlp]);
    let c = load(None, env(&[("LIVEGATE_AUDIT__SINK", "otlp")])).unwrap();
    assert_eq!(c.audit.sink.kinds(), [AuditSink::Otlp]);
    let c = load(None, env(&[("LIVEGATE_AUDIT__SINK", "[stdout, otlp]")])).unwrap();
    assert_eq!(c.audit.sink.kinds(), [AuditSink::Stdout, AuditSink::Otlp]);
    // Each sink's own requirements hold in a list too; a sink twice is named.
    let p = problems(load(None, env(&[("LIVEGATE_AUDIT__SINK", "[otlp, file]")])));
    assert!(p.contains("audit.path is required"), "{p}");
    let p = problems(load(None, env(&[("LIVEGATE_AUDIT__SINK", "[otlp, otlp]")])));
    assert!(p.contains("names otlp twice"), "{p}");
    let p = problems(load(None, env(&[("LIVEGATE_AUDIT__SINK", "kafka")])));
    assert!(p.contains("audit") && p.contains("sink"), "{p}");
}

#[test]
fn every_unknown_key_and_wrong_type_is_named_once() {
    let f = file(
        "[server]\nbogus = 1\nbody_read_timeout_ms = \"slow\"\n[vendor]\nretries = 3\n[[tenants]]\nid = \"acme\"\nextra = true\n",
    );
    let msg = problems(load(Some(f.path()), env(&[])));
    for needle in [
        "unknown key `server.bogus`",
        "server.body_read_timeout_ms: expected",
        "unknown key `vendor.retries`",
        "extra`",
    ] {
        assert_eq!(msg.matches(needle).count(), 1, "{needle:?} once in:\n{msg}");
    }
    assert!(!msg.contains("bogus.bogus"), "{msg}");

    let msg = problems(load(None, env(&[("LIVEGATE_SERVER__LISTN", "x")])));
    assert!(
        msg.contains("unknown key `server.listn` (from LIVEGATE_SERVER__LISTN)"),
        "{msg}"
    );
}

#[test]
fn a_wrong_required_value_is_reported_once() {
    let f = file("[auth]\npepper = \"0123456789abcdef0123\"\n[[tenants]]\nid = 7\n");
    let msg = problems(load(Some(f.path()), env(&[])));
    assert_eq!(msg.matches("tenants").count(), 1, "{msg}");
}
