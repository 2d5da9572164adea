//! `livegate`: the gateway binary. Parses the command line, loads the
//! configuration, and runs one of the commands; the work is in the library.

/// mimalloc rather than glibc's malloc: measured in the README's
/// *Performance* section (allocation was ~9 % of the gateway's CPU).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::{Args, Parser, Subcommand};
use livegate::admin_cli::{ConfigArg, KeysCommand, TenantsCommand};
use livegate::{gateway, runtime, server};
use livegate_auth::hash::Pepper;
use livegate_auth::key;
use livegate_config::{Config, Mode};

#[derive(Parser)]
#[command(
    name = "livegate",
    version,
    about = "Authenticating gateway in front of a face-liveness API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. With no vendor configured it runs the embedded
    /// default: built-in simulator, in-memory stores, a development key.
    Serve(ConfigArg),
    /// Validate the configuration and print it, secrets redacted.
    CheckConfig(ConfigArg),
    /// Run the vendor simulator as its own server (settings: `[simulator]`).
    Stub(StubArgs),
    /// Tenant keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
}

#[derive(Args)]
struct StubArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Listen address (default: simulator.listen, 127.0.0.1:8081).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("livegate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(c) => serve(load(&c)?),
        Command::CheckConfig(c) => check_config(&load(&c)?),
        Command::Stub(a) => stub(load(&a.config)?, a.listen),
        Command::Keys(KeysCommand::New {
            config,
            tenant,
            expires_at,
        }) => new_key(&load(&config)?, &tenant, expires_at.as_deref()),
        Command::Tenants(TenantsCommand::List { config, target }) if target.admin_url.is_none() => {
            list_tenants(&load(&config)?);
            Ok(())
        }
        Command::Keys(command) => command.admin_call()?.run(),
        Command::Tenants(command) => command.admin_call().run(),
    }
}

fn load(arg: &ConfigArg) -> anyhow::Result<Config> {
    Ok(livegate_config::load(
        arg.config.as_deref(),
        std::env::vars(),
    )?)
}

/// The runtime of the commands other than `serve` (tokio's default
/// blocking pool: at most 512 threads).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with_blocking_threads(512)
}

/// The gateway's runtime: its blocking pool is bounded by
/// `server.blocking_threads`. Each thread that
/// handled an image keeps its allocator's freed pages for a while, so an
/// unbounded pool, which on a busy machine starts a thread whenever none
/// is idle at that instant, multiplied peak memory. Measured on 2 CPUs at
/// 16 connections with replay detection: 200 KB bodies, 18-19 threads and
/// 71-78 MiB peak RSS unbounded, 8 threads and 57-59 MiB bounded at 2 per
/// CPU; 2 MB wrapped bodies, 376-422 MiB unbounded, 205-218 MiB bounded;
/// CPU per request the same within noise.
fn server_runtime(
    server: &livegate_config::ServerSettings,
) -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with_blocking_threads(server.blocking_threads())
}

fn runtime_with_blocking_threads(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(threads)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// How long a stopping process waits for its audit records to be written.
const AUDIT_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How often the TLS certificate files are checked for a change.
const TLS_RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

fn serve(config: Config) -> anyhow::Result<()> {
    let telemetry = livegate_telemetry::init(config.log.format, &config.log.level);
    let result = server_runtime(&config.server)?.block_on(async move {
        let mut rt = runtime::build(&config).await?;
        // From here on the admin and metrics tokens exist as digests only.
        let mut config = config;
        config.admin.forget_secrets();
        config.ops.forget_secrets();
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        let ops_listener = tokio::net::TcpListener::bind(config.ops.listen)
            .await
            .with_context(|| format!("binding ops.listen {}", config.ops.listen))?;
        let ops_addr = ops_listener.local_addr()?;
        if config.is_embedded_default() {
            embedded_banner(&rt, addr, ops_addr);
        }
        if rt.admin.is_none() {
            tracing::info!("no admin token (admin.token or admin.tokens): the admin API is off");
        }
        tracing::info!(%addr, %ops_addr, mode = rt.gateway.mode.as_str(), "livegate listening");
        // Plain lines tests and scripts can wait for, whatever the log format.
        println!("livegate ops listening on {ops_addr}");
        println!("livegate listening on {addr}");
        let _ = std::io::stdout().flush();

        // One signal stops both listeners.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            server::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        let edge = server::Edge::from_config(&config.server);
        let ops = server::Serve {
            app: gateway::ops_router(&rt.gateway, rt.admin.take(), rt.metrics_token.take()),
            // The ops listener has no readiness of its own.
            health: gateway::Health::default(),
            edge: edge.clone(),
            tls: None,
        };
        let ops_task = tokio::spawn(server::serve(ops_listener, ops, stopped(stop_rx.clone())));

        // Certificate files are looked at every few seconds; a change is used
        // for new connections, open ones keep theirs.
        let _watch = rt.tls.as_ref().map(|t| t.watch(TLS_RELOAD_EVERY));
        let public = server::Serve {
            app: gateway::router(&rt.gateway),
            health: rt.gateway.health.clone(),
            edge,
            tls: rt.tls.as_ref().map(|t| t.acceptor()),
        };
        let served = server::serve(listener, public, stopped(stop_rx)).await;
        let _ = ops_task.await;
        // Every request has ended: what its records reserved is queued.
        // Write it all before exiting, so a shutdown loses no record.
        let deadline = tokio::time::Instant::now() + AUDIT_FLUSH_TIMEOUT;
        if !rt.gateway.audit.flush(deadline).await {
            tracing::error!(
                queued = rt.gateway.audit.stats().queued,
                "audit: records still unwritten at exit (the sink is stuck)"
            );
        }
        served?;
        Ok(())
    });
    // Spans still queued are exported before the process exits.
    telemetry.shutdown();
    result
}

fn embedded_banner(
    rt: &runtime::Runtime,
    addr: std::net::SocketAddr,
    ops_addr: std::net::SocketAddr,
) {
    let sim = rt
        .simulator
        .as_ref()
        .map(|s| s.base_url())
        .unwrap_or_default();
    let mut out = String::new();
    if rt.gateway.mode == Mode::Simulator {
        tracing::warn!(
            simulator = %sim,
            "SIMULATOR ENABLED: simulator.enabled = true and no vendor.base_url; every tenant gets SIMULATOR scores. Not for production."
        );
        out.push_str("==================== livegate: SIMULATOR ENABLED ===================\n");
        out.push_str(
            "simulator.enabled = true: every tenant's score comes from the built-in SIMULATOR,\n",
        );
        out.push_str("not from the liveness vendor. Not for production.\n");
    } else {
        tracing::warn!(
            simulator = %sim,
            "EMBEDDED DEFAULT: no vendor configured; answering with the built-in simulator and in-memory stores. Not for production."
        );
        out.push_str("==================== livegate: EMBEDDED DEFAULT ====================\n");
    }
    out.push_str("No vendor is configured: scores come from the built-in SIMULATOR\n");
    out.push_str(&format!(
        "({sim}); tenants and keys live in memory only. Not for production.\n"
    ));
    if let Some(key) = &rt.dev_key {
        out.push_str("Development tenant \"dev\", key (valid until this process exits):\n\n");
        out.push_str(&format!("    {}\n\n", key.expose()));
        out.push_str(&format!(
            "Try: curl -s http://127.0.0.1:{}/modules/liveness -H 'x-api-key: <key>' \\\n       -H 'content-type: image/jpeg' --data-binary @testdata/face-320x240.jpg\n",
            addr.port()
        ));
    }
    if let Some(token) = &rt.dev_admin_token {
        out.push_str(&format!(
            "Development admin token (admin API on http://{ops_addr}/admin/v1/...):\n\n    {}\n\n",
            token.expose()
        ));
    }
    out.push_str("====================================================================");
    println!("{out}");
}

fn check_config(config: &Config) -> anyhow::Result<()> {
    let problems = config.serve_problems();
    if !problems.is_empty() {
        anyhow::bail!(
            "`serve` would refuse this configuration:\n  - {}",
            problems.join("\n  - ")
        );
    }
    let text = toml::to_string_pretty(config).context("printing the configuration")?;
    println!("# livegate effective configuration (secrets redacted)");
    match config.mode() {
        Mode::Embedded => println!(
            "# mode: EMBEDDED DEFAULT (no vendor.base_url: built-in simulator, in-memory stores)"
        ),
        Mode::Simulator => println!(
            "# mode: SIMULATOR (simulator.enabled = true: tenants get simulator scores, not the vendor's)"
        ),
        Mode::Vendor => {}
    }
    print!("{text}");
    Ok(())
}

fn stub(config: Config, listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let _telemetry = livegate_telemetry::init(config.log.format, &config.log.level);
    runtime()?.block_on(async move {
        let addr = listen.unwrap_or(config.simulator.listen);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;
        let key = runtime::simulator_key(&config.simulator);
        if config.simulator.api_key.is_none() {
            println!("vendor simulator: no simulator.api_key set; it expects this generated vendor key:\n    {}", key.expose());
        }
        println!("livegate stub listening on {addr}");
        let _ = std::io::stdout().flush();
        livegate_stub::serve(
            listener,
            config.simulator.stub_config(key.expose()),
            server::shutdown_signal(),
        )
        .await?;
        Ok(())
    })
}

fn new_key(config: &Config, tenant: &str, expires_at: Option<&str>) -> anyhow::Result<()> {
    let pepper = config.auth.pepper.as_ref().context(
        "auth.pepper (or auth.pepper_file) must be configured: the key's hash depends on it",
    )?;
    let pepper =
        Pepper::new(pepper.expose().as_bytes()).map_err(|e| anyhow!("auth.pepper: {e}"))?;
    let expires_at = expires_at
        .map(str::parse::<livegate_core::Timestamp>)
        .transpose()
        .context("--expires-at must be RFC 3339, e.g. 2027-01-31T00:00:00Z")?;
    let new = key::generate();
    let hash = new.hash(&pepper);
    println!(
        "# New key for tenant {tenant:?}. Give the key to the tenant now: it is not stored and cannot be shown again."
    );
    println!("key = \"{}\"", new.plaintext.expose());
    println!();
    println!("# Add under the [[tenants]] entry with id = {tenant:?}:");
    println!("[[tenants.keys]]");
    println!("id = \"{}\"", new.kid);
    println!("hash = \"{hash}\"");
    if let Some(t) = expires_at {
        println!("expires_at = \"{t}\"");
    }
    Ok(())
}

fn list_tenants(config: &Config) {
    if config.tenants.is_empty() {
        println!("no tenants configured");
    }
    for t in &config.tenants {
        let state = if t.disabled { "disabled" } else { "enabled" };
        println!("{}\t{state}\t{}", t.id, t.name.as_deref().unwrap_or(""));
        for k in &t.keys {
            let exp = k
                .expires_at
                .map_or_else(|| "never".to_owned(), |t| t.to_string());
            let rev = if k.revoked { "\trevoked" } else { "" };
            println!("  key {}\texpires {exp}{rev}", k.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn the_blocking_pool_is_bounded_by_server_blocking_threads() {
        let server = livegate_config::ServerSettings {
            blocking_threads: Some(2),
            ..Default::default()
        };
        let rt = super::server_runtime(&server).unwrap();
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        rt.block_on(async {
            let tasks: Vec<_> = (0..12)
                .map(|_| {
                    let (now, most) = (now.clone(), most.clone());
                    tokio::task::spawn_blocking(move || {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        // All 12 ran, never more than two at a time.
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
