//! `portico` command line: run, check, routes, demo.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use portico::config::units::parse_duration;
use portico::filter::auth;
use portico::logging::{self, LogFormat};
use portico::{Running, demo};

// mimalloc: a proxy allocates and frees a dozen small buffers per request (headers, futures,
// pooled-connection bookkeeping); measured with load-tests/profile and load-tests/compare.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "portico",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("PORTICO_GIT_COMMIT"), ")"),
    about = "Programmable API gateway and BFF reverse proxy"
)]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve; reloads on file change, SIGHUP and POST /admin/reload.
    Run {
        /// Path to gateway.toml.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
        #[command(flatten)]
        listen: ListenFlags,
    },
    /// Validate gateway.toml and bff/*.toml; exit 1 listing every problem with file:line:col.
    Check {
        /// Path to gateway.toml.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
        /// Exit 1 when there are warnings too (a route that never matches, an unset secret…).
        #[arg(long)]
        strict: bool,
    },
    /// Print the compiled route table.
    Routes {
        /// Path to gateway.toml.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Mint a JWT for a provider with a secret or a private_key_file (dev and load tests).
    Token {
        /// Path to gateway.toml.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
        /// Provider name from `[auth.providers]`.
        #[arg(long)]
        provider: String,
        /// `sub` claim.
        #[arg(long)]
        sub: String,
        /// `scope` claim, space-separated scopes.
        #[arg(long)]
        scope: Option<String>,
        /// Lifetime.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// Extra claim KEY=VALUE (VALUE is read as JSON when it parses, else as a string);
        /// repeatable.
        #[arg(long = "claim", value_name = "KEY=VALUE")]
        claims: Vec<String>,
        /// `kid` header.
        #[arg(long)]
        kid: Option<String>,
    },
    /// Start the built-in demo upstreams and the gateway on the default config.
    Demo {
        /// Path to gateway.toml.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
        /// Added latency of every demo answer.
        #[arg(long, default_value = "1ms", value_parser = parse_duration)]
        latency: Duration,
        #[command(flatten)]
        listen: ListenFlags,
    },
    /// GET a URL (e.g. http://127.0.0.1:9902/readyz); exit 0 on a 2xx answer, 1 otherwise.
    /// For container HEALTHCHECKs: the image has no curl.
    Probe {
        /// The URL (plain http://).
        url: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Print a shell completion script: `portico completions bash > /etc/bash_completion.d/portico`,
    /// `portico completions zsh > "${fpath[1]}/_portico"`, `portico completions fish >
    /// ~/.config/fish/completions/portico.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Listener addresses that win over gateway.toml (containers expose admin and probes this way).
#[derive(clap::Args)]
struct ListenFlags {
    /// Replaces `server.listen`.
    #[arg(long, env = "PORTICO_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Replaces `server.admin_listen`.
    #[arg(long, env = "PORTICO_ADMIN_LISTEN")]
    admin_listen: Option<std::net::SocketAddr>,
    /// Replaces `server.health_listen` (a listener serving only /healthz and /readyz).
    #[arg(long, env = "PORTICO_HEALTH_LISTEN")]
    health_listen: Option<std::net::SocketAddr>,
}

impl ListenFlags {
    fn install(&self) {
        portico::runtime::set_listen_overrides(portico::runtime::ListenOverrides {
            listen: self.listen,
            admin_listen: self.admin_listen,
            health_listen: self.health_listen,
        });
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Check { config, strict } => check(&config, strict),
        Command::Routes { config } => routes(&config),
        Command::Run { config, listen } => {
            listen.install();
            serve(&config, None)
        }
        Command::Demo {
            config,
            latency,
            listen,
        } => {
            listen.install();
            use_demo_secret_if_unset();
            serve(&config, Some(latency))
        }
        Command::Probe { url, timeout } => probe(&url, timeout),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "portico",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Token {
            config,
            provider,
            sub,
            scope,
            ttl,
            claims,
            kid,
        } => token(&config, &provider, sub, scope, ttl, &claims, kid),
    }
}

fn probe(url: &str, timeout: Duration) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(portico::probe::probe(url, timeout)) {
        Ok(status) => {
            println!("{url}: {status}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("{why}");
            ExitCode::FAILURE
        }
    }
}

/// `portico demo` and `portico token` fall back to the documented demo secret so the shipped
/// config works out of the box; `portico run` never does.
fn use_demo_secret_if_unset() -> bool {
    let unset = std::env::var(auth::DEV_SECRET_ENV).map_or(true, |v| v.is_empty());
    if unset {
        auth::set_secret_fallback(auth::DEV_SECRET_ENV, auth::DEMO_SECRET);
    }
    unset
}

fn token(
    path: &Path,
    provider: &str,
    sub: String,
    scope: Option<String>,
    ttl: Duration,
    claims: &[String],
    kid: Option<String>,
) -> ExitCode {
    if use_demo_secret_if_unset() {
        eprintln!(
            "note: {} is not set; signing with the demo secret (accepted by `portico demo` only)",
            auth::DEV_SECRET_ENV
        );
    }
    let mut extra = Vec::new();
    for c in claims {
        let Some((k, v)) = c.split_once('=') else {
            eprintln!("bad --claim \"{c}\": expected KEY=VALUE");
            return ExitCode::FAILURE;
        };
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::from(v));
        extra.push((k.to_string(), value));
    }
    let rt = match portico::runtime::load(path, None) {
        Ok(rt) => rt,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let Some(p) = rt.auth.providers.get(provider) else {
        let known: Vec<&str> = rt.auth.providers.keys().map(|k| &**k).collect();
        eprintln!(
            "unknown provider `{provider}` (known: {})",
            known.join(", ")
        );
        return ExitCode::FAILURE;
    };
    let options = auth::MintOptions {
        sub,
        scope,
        ttl,
        claims: extra,
        kid,
    };
    match p.mint(&options) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path, strict: bool) -> ExitCode {
    match portico::runtime::load(path, None) {
        Ok(rt) => {
            for w in &rt.warnings {
                eprintln!("{}", w.warning());
            }
            println!(
                "{}: ok ({} routes, {} upstreams); {} BFF profiles",
                path.display(),
                rt.routes.routes().len(),
                rt.upstreams.len(),
                rt.bff.profiles.len()
            );
            if let Some(tls) = &rt.tls {
                print!("{}", portico::tls::describe(tls));
            }
            if rt.warnings.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("{} warning(s)", rt.warnings.len());
                if strict {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} problem(s) found", errors.0.len());
            ExitCode::FAILURE
        }
    }
}

fn routes(path: &Path) -> ExitCode {
    match portico::runtime::load(path, None) {
        Ok(rt) => {
            print!("{}", portico::route::describe(&rt.routes));
            print!("{}", portico::bff::describe(&rt.bff));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &Path, demo_latency: Option<Duration>) -> ExitCode {
    let runtime = match portico::runtime::load(path, None) {
        Ok(rt) => rt,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    // One worker: a single-threaded scheduler does the same work without work-stealing queues
    // and cross-thread wake-ups (measured with load-tests/profile and load-tests/compare).
    let mut builder = match runtime.server.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let tokio = match builder.enable_all().build() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = tokio.block_on(async move {
        if let Some(latency) = demo_latency {
            if let Err(e) = start_demo_upstreams(&runtime, latency).await {
                eprintln!("cannot start demo upstreams: {e}");
                return ExitCode::FAILURE;
            }
        }
        let running = match Running::start_with(path.to_path_buf(), runtime).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        if demo_latency.is_some() {
            print_tour(running.http_addr(), &running.gateway.runtime());
        }
        // `ready` is printed once the signal handlers are in place: a supervisor may send
        // SIGTERM as soon as it reads that line.
        wait_for_signals(running, announce_ready).await
    });
    // Requests cut by an expired grace period must not keep the process alive.
    tokio.shutdown_timeout(Duration::from_secs(1));
    code
}

/// One line on stdout once every listener is bound, for supervisors and tests:
/// `ready http=ADDR [https=ADDR] admin=ADDR|off [health=ADDR] pid=PID`.
fn announce_ready(running: &Running) {
    use std::io::Write as _;
    let admin = running
        .admin_addr()
        .map_or_else(|| "off".to_string(), |a| a.to_string());
    let https = running
        .https_addr()
        .map(|a| format!(" https={a}"))
        .unwrap_or_default();
    let health = running
        .health_addr()
        .map(|a| format!(" health={a}"))
        .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "ready http={}{https} admin={admin}{health} pid={}",
        running.http_addr(),
        std::process::id()
    );
    let _ = out.flush();
}

async fn start_demo_upstreams(
    runtime: &portico::runtime::Runtime,
    latency: Duration,
) -> std::io::Result<()> {
    for (name, upstream) in &runtime.upstreams {
        let Some(app) = demo::App::for_upstream(name) else {
            continue;
        };
        for ep in upstream.endpoints().iter() {
            let addr = format!(
                "{}:{}",
                ep.authority.host(),
                ep.authority.port_u16().unwrap_or(80)
            );
            let addr: std::net::SocketAddr = addr.parse().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("demo upstream `{name}` needs IP:PORT endpoints, got {addr}"),
                )
            })?;
            demo::spawn(addr, app, latency).await?;
            tracing::info!(upstream = %name, %addr, "demo upstream listening");
        }
    }
    Ok(())
}

fn print_tour(addr: std::net::SocketAddr, rt: &portico::runtime::Runtime) {
    // Every URL is quoted: `?` and `&` are special to zsh and other shells.
    println!("Portico demo is up on 'http://{addr}'. Try:");
    println!("  curl -s 'http://{addr}/api/users/42'");
    println!(
        "  curl -s 'http://{addr}/api/users' -H 'content-type: application/json' -d '{{\"name\":\"Ada\"}}'"
    );
    println!("  curl -s 'http://{addr}/api/orders?user=42'");
    println!("  curl -s 'http://{addr}/api/catalog/recommendations?segment=gold'");
    println!("  curl -si 'http://{addr}/nope'            # 404 problem+json");
    let minted = rt.auth.providers.get("dev").map(|p| {
        p.mint(&auth::MintOptions {
            sub: "42".into(),
            scope: Some("users:read".into()),
            ttl: Duration::from_secs(3600),
            ..Default::default()
        })
    });
    let token = match minted {
        Some(Ok(token)) => {
            println!(
                "JWT-protected route (token for sub 42, scope users:read, valid 1h; mint more with"
            );
            println!("`portico token --provider dev --sub 42 --scope users:read`):");
            println!("  curl -si 'http://{addr}/api/profile/42'  # 401 without a token");
            println!("  curl -s 'http://{addr}/api/profile/42' -H 'authorization: Bearer {token}'");
            token
        }
        _ => String::from("$TOKEN"),
    };
    println!("BFF profiles (one endpoint, three shapes; see bff/*.toml):");
    println!("  curl -si 'http://{addr}/web/home?user=42'      # rich; Server-Timing per part");
    println!("  curl -s  'http://{addr}/iot/home?user=42'      # minimal");
    println!(
        "  curl -s  'http://{addr}/mobile/home' -H 'authorization: Bearer {token}'   # lean; user from the token"
    );
    println!("  curl -s  'http://{addr}/home?user=42' -H 'x-client: iot'");
    println!("  curl -s  'http://{addr}/web/orders/42-1'       # flattened order + product");
    println!(
        "  curl -si 'http://{addr}/web/home?user=42' -H 'portico-budget-ms: 1'   # budget spent: 504"
    );
}

/// Serves until SIGTERM or SIGINT, reloading on SIGHUP; then drains. A second SIGTERM/SIGINT
/// during the drain exits at once with status 1. `ready` announces the process once the handlers
/// are installed.
#[cfg(unix)]
async fn wait_for_signals(mut running: Running, ready: fn(&Running)) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    ready(&running);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let gateway = running.gateway.clone();
                // The outcome is logged (and counted) by reload_by itself.
                let _ = tokio::task::spawn_blocking(move || gateway.reload_by("SIGHUP")).await;
            }
        }
    }
    let grace = running.gateway.runtime().server.shutdown_grace;
    tracing::info!(
        ?grace,
        "shutting down: readiness is 503, no new connections after server.drain_delay, draining in-flight requests (send the signal again to exit now)"
    );
    let drain = async move {
        // Load balancers see /readyz 503 and take the instance out while it still serves.
        running.announce_draining().await;
        running.stop_accepting().await;
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "draining");
            let _ = out.flush();
        }
        running.shutdown().await
    };
    tokio::select! {
        drained = drain => {
            if drained {
                tracing::info!("drained; bye");
            } else {
                tracing::warn!("grace period over; closing remaining connections");
            }
            ExitCode::SUCCESS
        }
        _ = term.recv() => second_signal(),
        _ = int.recv() => second_signal(),
    }
}

#[cfg(unix)]
fn second_signal() -> ExitCode {
    tracing::warn!("second signal: exiting now, in-flight requests are cut");
    std::process::exit(1)
}
