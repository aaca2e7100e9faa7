//! `portico` command line: run, check, routes, demo.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use portico::config::{self, units::parse_duration};
use portico::logging::{self, LogFormat};
use portico::{Running, demo};

#[derive(Parser)]
#[command(
    name = "portico",
    version,
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
    },
    /// Validate gateway.toml and bff/*.toml; exit 1 listing every problem with file:line:col.
    Check {
        /// Path to gateway.toml.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Print the compiled route table.
    Routes {
        /// Path to gateway.toml.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Start the built-in demo upstreams and the gateway on the default config.
    Demo {
        /// Path to gateway.toml.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
        /// Added latency of every demo answer.
        #[arg(long, default_value = "1ms", value_parser = parse_duration)]
        latency: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Routes { config } => routes(&config),
        Command::Run { config } => serve(&config, None),
        Command::Demo { config, latency } => serve(&config, Some(latency)),
    }
}

fn check(path: &Path) -> ExitCode {
    match config::load(path, None) {
        Ok(rt) => {
            println!(
                "{}: ok ({} routes, {} upstreams, {} BFF profiles)",
                path.display(),
                rt.routes.routes().len(),
                rt.upstreams.len(),
                rt.bff.profiles.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} problem(s) found", errors.0.len());
            ExitCode::FAILURE
        }
    }
}

fn routes(path: &Path) -> ExitCode {
    match config::load(path, None) {
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
    let runtime = match config::load(path, None) {
        Ok(rt) => rt,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = runtime.server.workers {
        builder.worker_threads(n);
    }
    let tokio = match builder.enable_all().build() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio.block_on(async move {
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
            print_tour(running.http_addr());
        }
        wait_for_signals(running).await
    })
}

async fn start_demo_upstreams(runtime: &config::Runtime, latency: Duration) -> std::io::Result<()> {
    for (name, upstream) in &runtime.upstreams {
        let Some(app) = demo::App::for_upstream(name) else {
            continue;
        };
        for ep in upstream.endpoints() {
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

fn print_tour(addr: std::net::SocketAddr) {
    println!("Portico demo is up on http://{addr}. Try:");
    println!("  curl -s http://{addr}/api/users/42");
    println!(
        "  curl -s http://{addr}/api/users -H 'content-type: application/json' -d '{{\"name\":\"Ada\"}}'"
    );
    println!("  curl -s http://{addr}/api/orders?user=42");
    println!("  curl -s http://{addr}/api/catalog/recommendations?segment=gold");
    println!("  curl -si http://{addr}/nope            # 404 problem+json");
    println!("BFF profiles (one endpoint, three shapes; see bff/*.toml):");
    println!("  curl -si 'http://{addr}/web/home?user=42'      # rich; Server-Timing per part");
    println!("  curl -s  'http://{addr}/mobile/home?user=42'   # lean");
    println!("  curl -s  'http://{addr}/iot/home?user=42'      # minimal");
    println!("  curl -s  'http://{addr}/home?user=42' -H 'x-client: mobile'");
    println!("  curl -s  'http://{addr}/web/orders/42-1'       # flattened order + product");
    println!(
        "  curl -si 'http://{addr}/web/home?user=42' -H 'portico-budget-ms: 1'   # budget spent: 504"
    );
}

#[cfg(unix)]
async fn wait_for_signals(running: Running) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match running.gateway.reload() {
                Ok(rt) => tracing::info!(version = %rt.version, "reloaded on SIGHUP"),
                Err(errors) => tracing::error!("reload failed; keeping the current config:\n{errors}"),
            },
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    let drained = running.shutdown();
    tokio::select! {
        ok = drained => {
            if !ok {
                tracing::warn!("grace period over; closing remaining connections");
            }
            ExitCode::SUCCESS
        }
        _ = term.recv() => { tracing::warn!("second signal: exiting now"); ExitCode::SUCCESS }
        _ = int.recv() => { tracing::warn!("second signal: exiting now"); ExitCode::SUCCESS }
    }
}
