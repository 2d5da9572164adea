//! The documentation, checked like code.
//!
//! `docs/configuration.md` must list every configuration key the gateway
//! accepts and no key it does not: the keys are gathered from three places
//! that do not depend on how the configuration types are laid out inside —
//! what `livegate check-config` prints for the defaults (with each scalar
//! default compared to the one the page gives), the keys of
//! `config/livegate.example.toml` (commented-out ones included), and the
//! key names serde itself lists when the configuration type is given an
//! unknown key (every section denies unknown keys, so its error names all
//! the keys it takes, optional ones that default to nothing included).
//!
//! `README.md` must stay at most 300 lines, link every page of `docs/`, and
//! every relative link of the README and of `docs/` must resolve: the file
//! exists and, for `#anchor`s into markdown, the heading does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------- keys

/// Documented keys: section headings (`` ## `[server]` ``,
/// `` ### `[[tenants.keys]]` ``) and, under them, the backticked names in
/// the first cell of table rows. Each key maps to the default cell's first
/// backticked token, if any.
fn documented_keys(md: &str) -> BTreeMap<String, Option<String>> {
    let mut keys = BTreeMap::new();
    let mut section: Option<String> = None;
    for line in md.lines() {
        if line.starts_with('#') {
            section = heading_section(line);
            if let Some(s) = &section {
                keys.insert(s.clone(), None);
            }
            continue;
        }
        let Some(section) = &section else { continue };
        let Some(row) = line.strip_prefix('|') else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").collect();
        let names = backticked(cells[0]);
        if names.is_empty() || !names.iter().all(|n| is_key_name(n)) {
            continue;
        }
        let default = cells.get(1).and_then(|c| backticked(c).into_iter().next());
        for name in names {
            keys.insert(format!("{section}.{name}"), default.clone());
        }
    }
    keys
}

/// `server` for `` ## `[server]` ``, `tenants.keys` for `` ### `[[tenants.keys]]` ``.
fn heading_section(line: &str) -> Option<String> {
    let inner = backticked(line).into_iter().next()?;
    let name = inner
        .strip_prefix("[[")
        .and_then(|s| s.strip_suffix("]]"))
        .or_else(|| inner.strip_prefix('[').and_then(|s| s.strip_suffix(']')))?;
    name.split('.').all(is_key_name).then(|| name.to_owned())
}

fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

fn is_key_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Every key path of a TOML value: tables and arrays of tables are
/// descended into (`tenants.keys.id`), and each path is recorded.
fn toml_paths(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    let tables: Vec<&toml::Table> = match value {
        toml::Value::Table(t) => vec![t],
        toml::Value::Array(items) => items.iter().filter_map(|v| v.as_table()).collect(),
        _ => return,
    };
    for table in tables {
        for (k, v) in table {
            let path = join(prefix, k);
            out.insert(path.clone(), v.clone());
            toml_paths(&path, v, out);
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// What `livegate check-config` prints for the built-in defaults.
fn check_config_defaults() -> BTreeMap<String, toml::Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livegate"));
    cmd.arg("check-config");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LIVEGATE_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    let out = cmd.output().expect("run livegate check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check-config failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: toml::Value = stdout.parse().expect("check-config prints TOML");
    let mut keys = BTreeMap::new();
    toml_paths("", &value, &mut keys);
    keys
}

/// The keys of the example configuration: the ones set, and the ones shown
/// commented out (`# base_url = "…"`, `# or api_key = "…"`, under a
/// `[section]` or a commented `# [[tenants]]`).
fn example_keys() -> BTreeSet<String> {
    let text = read("config/livegate.example.toml");
    let value: toml::Value = text.parse().expect("the example is TOML");
    let mut set = BTreeMap::new();
    toml_paths("", &value, &mut set);
    let mut keys: BTreeSet<String> = set.into_keys().collect();

    let mut section: Option<String> = None;
    for line in text.lines() {
        let code = line.trim_start_matches(['#', ' ']);
        if let Some(name) = code
            .strip_prefix("[[")
            .and_then(|s| s.split_once("]]"))
            .map(|(s, _)| s)
            .or_else(|| {
                code.strip_prefix('[')
                    .and_then(|s| s.split_once(']'))
                    .map(|(s, _)| s)
            })
            .filter(|s| s.split('.').all(is_key_name))
        {
            section = Some(name.to_owned());
            keys.insert(name.to_owned());
            continue;
        }
        let Some(section) = &section else { continue };
        if !line.trim_start().starts_with('#') {
            continue;
        }
        // `# key = …`, and `# … # or key = …` after it.
        let mut candidates = vec![code];
        candidates.extend(line.match_indices("# or ").map(|(i, _)| &line[i + 5..]));
        for c in candidates {
            if let Some((name, _)) = c.split_once(" =") {
                if is_key_name(name.trim()) {
                    keys.insert(format!("{section}.{}", name.trim()));
                }
            }
        }
    }
    keys
}

/// A step of a key path in the probe document.
#[derive(Clone)]
enum Seg {
    Table(String),
    Array(String),
}

const PROBE: &str = "zz_livegate_docs_probe";

/// The key names serde lists for the table at `path` when it holds an
/// unknown key; `None` when the value there is not such a table.
fn fields_at(path: &[Seg]) -> Option<Vec<String>> {
    let mut value = serde_json::json!({ PROBE: 1 });
    for seg in path.iter().rev() {
        value = match seg {
            Seg::Table(name) => serde_json::json!({ name: value }),
            Seg::Array(name) => serde_json::json!({ name: [value] }),
        };
    }
    let err = serde_json::from_value::<livegate_config::Config>(value)
        .err()?
        .to_string();
    let rest = err.strip_prefix(&format!("unknown field `{PROBE}`"))?;
    Some(backticked(rest))
}

/// Every key path the configuration type accepts, tables included.
fn type_keys() -> BTreeSet<String> {
    fn walk(path: &[Seg], prefix: &str, out: &mut BTreeSet<String>) {
        let fields = fields_at(path).unwrap_or_else(|| {
            panic!(
                "`{prefix}` does not name its keys when given an unknown one: every \
                 configuration table must deny unknown keys (serde's deny_unknown_fields)"
            )
        });
        for field in fields {
            let key = join(prefix, &field);
            out.insert(key.clone());
            for seg in [Seg::Table(field.clone()), Seg::Array(field.clone())] {
                let mut deeper = path.to_vec();
                deeper.push(seg);
                if fields_at(&deeper).is_some() {
                    walk(&deeper, &key, out);
                    break;
                }
            }
        }
    }
    let mut keys = BTreeSet::new();
    walk(&[], "", &mut keys);
    keys
}

/// The documented default equals the one `check-config` prints.
fn same_default(doc: &str, actual: &toml::Value) -> bool {
    match actual {
        toml::Value::String(s) => doc == s,
        toml::Value::Integer(i) => doc.parse::<i64>() == Ok(*i),
        toml::Value::Float(f) => doc
            .parse::<f64>()
            .is_ok_and(|d| (d - f).abs() <= 1e-6 * f.abs().max(1.0)),
        toml::Value::Boolean(b) => doc.parse::<bool>() == Ok(*b),
        other => format!("v = {doc}")
            .parse::<toml::Table>()
            .is_ok_and(|t| &t["v"] == other),
    }
}

#[test]
fn configuration_md_lists_every_key_and_only_real_ones() {
    let documented = documented_keys(&read("docs/configuration.md"));
    let types = type_keys();
    let printed = check_config_defaults();
    let example = example_keys();
    assert!(
        types.contains("server.listen") && types.contains("tenants.keys.hash"),
        "the probe found too little: {types:?}"
    );
    assert!(documented.len() > 50, "too few keys parsed: {documented:?}");

    let mut problems = Vec::new();
    for (source, keys) in [
        ("the configuration types", types.clone()),
        ("`livegate check-config`", printed.keys().cloned().collect()),
        ("config/livegate.example.toml", example.clone()),
    ] {
        for key in keys.iter().filter(|k| !documented.contains_key(*k)) {
            problems.push(format!(
                "`{key}` (from {source}) is not in docs/configuration.md"
            ));
        }
    }
    for key in documented.keys().filter(|k| !types.contains(*k)) {
        problems.push(format!(
            "`{key}` is in docs/configuration.md but the configuration has no such key"
        ));
    }
    for key in example.iter().filter(|k| !types.contains(*k)) {
        problems.push(format!(
            "`{key}` is in config/livegate.example.toml but the configuration has no such key"
        ));
    }
    for (key, actual) in &printed {
        if matches!(actual, toml::Value::Table(_))
            || matches!(actual, toml::Value::Array(a) if a.is_empty() || a.iter().any(toml::Value::is_table))
        {
            continue;
        }
        match documented.get(key) {
            Some(Some(doc)) if same_default(doc, actual) => {}
            Some(doc) => problems.push(format!(
                "`{key}`: docs/configuration.md gives the default {doc:?}, check-config prints {actual}"
            )),
            None => {}
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The checker itself: a key missing from the page, or one the
/// configuration does not have, is found.
#[test]
fn the_key_checks_catch_a_missing_and_an_invented_key() {
    let page = read("docs/configuration.md");
    let documented = documented_keys(&page);
    assert!(documented.contains_key("server.body_limit_bytes"));
    assert!(documented.contains_key("tenants.keys.expires_at"));
    assert!(documented.contains_key("tenants.protection.review_band"));
    let without = page.replace("| `body_limit_bytes` |", "| body limit |");
    assert!(!documented_keys(&without).contains_key("server.body_limit_bytes"));

    let types = type_keys();
    assert!(
        types.contains("server.blocking_threads"),
        "an optional key unset by default"
    );
    assert!(types.contains("protection.score_threshold"));
    assert!(types.contains("tenants.images.min_width"));
    assert!(!types.contains("server.bogus"));
    let invented = format!(
        "{page}\n## `[server]`\n\n| key | default | what |\n|---|---|---|\n| `bogus` | `1` | x |\n"
    );
    assert!(documented_keys(&invented).contains_key("server.bogus"));

    assert!(same_default(
        "0.1",
        &toml::Value::Float(0.10000000149011612)
    ));
    assert!(!same_default("0.2", &toml::Value::Float(0.1)));
    assert!(same_default(
        r#"["jpeg", "png"]"#,
        &toml::Value::Array(vec!["jpeg".into(), "png".into()])
    ));
    assert!(!same_default("10", &toml::Value::Integer(11)));
}

// ------------------------------------------------------- README and links

#[test]
fn readme_is_at_most_300_lines_and_maps_every_docs_page() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(lines <= 300, "README.md has {lines} lines; at most 300");
    let mut pages: Vec<String> = std::fs::read_dir(repo("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 4, "{pages:?}");
    for page in pages {
        assert!(
            readme.contains(&format!("](docs/{page})")),
            "README.md does not link docs/{page}"
        );
    }
}

#[test]
fn relative_links_of_readme_and_docs_resolve() {
    let mut files = vec!["README.md".to_owned()];
    for e in std::fs::read_dir(repo("docs")).expect("docs/") {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            files.push(format!("docs/{name}"));
        }
    }
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let dir = Path::new(file).parent().unwrap_or(Path::new(""));
        for target in links(&read(file)) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                PathBuf::from(file)
            } else {
                dir.join(path)
            };
            checked += 1;
            let full = repo(resolved.to_str().unwrap());
            if !full.exists() {
                broken.push(format!("{file}: {target} (no such file)"));
                continue;
            }
            let markdown = resolved.extension().is_some_and(|e| e == "md");
            if let Some(anchor) = anchor.filter(|_| markdown) {
                if !anchors(&std::fs::read_to_string(&full).unwrap()).contains(anchor) {
                    broken.push(format!("{file}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(checked > 20, "too few links found: {checked}");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The targets of `[text](target)` links outside code blocks and code spans.
fn links(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop code spans: a `](` inside one is not a link.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    out
}

/// GitHub's heading anchors: lower case, punctuation other than `-` and
/// `_` dropped, spaces as `-`; a repeated heading gets `-1`, `-2`, ….
fn anchors(md: &str) -> BTreeSet<String> {
    let mut seen = BTreeMap::<String, usize>::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let text = line.trim_start_matches('#').trim();
        let slug: String = text
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

#[test]
fn the_anchor_rules_match_githubs() {
    let a = anchors("# The edge, load shedding\n## `[server]`\n## Redis\n## Redis\n");
    assert!(a.contains("the-edge-load-shedding"), "{a:?}");
    assert!(a.contains("server"), "{a:?}");
    assert!(a.contains("redis") && a.contains("redis-1"), "{a:?}");
    assert_eq!(
        links("see [x](docs/a.md#b) and `[y](no)`\n```\n[z](no)\n```\n"),
        vec!["docs/a.md#b".to_owned()]
    );
}
