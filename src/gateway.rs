//! The running gateway: the current runtime behind `ArcSwap`, listeners, reload and shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::inventory::ReloadSummary;
use crate::config::{self, ConfigErrors, Runtime};
use crate::server::{self, ConnTracker};

/// Shared state of one gateway process.
#[derive(Debug)]
pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    config_path: PathBuf,
    generation: AtomicU64,
    draining: AtomicBool,
    reload_lock: std::sync::Mutex<()>,
    status: watch::Sender<ReloadStatus>,
    /// Bound port of the HTTPS listener (0: none), the target of `redirect_https`.
    https_port: AtomicU16,
}

/// What the last reload attempt did; observers (tests, the admin API) can await changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Reload attempts so far (successful or not).
    pub attempts: u64,
    /// Current config generation.
    pub generation: u64,
    /// When the last attempt ended.
    pub at: SystemTime,
    /// Errors of the last attempt, when it failed (as `portico check` prints them).
    pub errors: Option<ConfigErrors>,
}

/// A reload that succeeded.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The runtime now serving.
    pub runtime: Arc<Runtime>,
    /// Its generation.
    pub generation: u64,
    /// What changed.
    pub summary: ReloadSummary,
    /// Time to read, validate, compile and swap.
    pub took: Duration,
}

impl Gateway {
    /// Wraps a compiled runtime.
    pub fn new(config_path: PathBuf, runtime: Runtime) -> Arc<Gateway> {
        crate::upstream::activate(None, &runtime.upstreams);
        let (status, _) = watch::channel(ReloadStatus {
            attempts: 0,
            generation: 1,
            at: runtime.loaded_at,
            errors: None,
        });
        Arc::new(Gateway {
            runtime: ArcSwap::from_pointee(runtime),
            config_path,
            generation: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            reload_lock: std::sync::Mutex::new(()),
            status,
            https_port: AtomicU16::new(0),
        })
    }

    /// The runtime new requests use. A request keeps the one it started with.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Config generation: 1 at start, +1 per successful reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The gateway.toml this gateway was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Bound port of the HTTPS listener, if one is running.
    pub fn https_port(&self) -> Option<u16> {
        Some(self.https_port.load(Ordering::Relaxed)).filter(|&p| p != 0)
    }

    /// Records the HTTPS listener's bound port (0: none).
    pub fn set_https_port(&self, port: u16) {
        self.https_port.store(port, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Marks the gateway as draining: readiness turns 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Outcome of the last reload attempt; `changed()` on the receiver wakes after each attempt.
    pub fn reload_status(&self) -> watch::Receiver<ReloadStatus> {
        self.status.subscribe()
    }

    /// Reads, validates and compiles the whole config, then swaps it in; on any error the
    /// current runtime keeps serving and the errors are returned.
    pub fn reload(&self) -> Result<Arc<Runtime>, ConfigErrors> {
        self.reload_by("api").map(|r| r.runtime)
    }

    /// [`Gateway::reload`] that also logs one line naming `trigger` (file change, SIGHUP, admin)
    /// with what changed, counts the outcome in the metrics and reports it to watchers.
    pub fn reload_by(&self, trigger: &str) -> Result<Reloaded, ConfigErrors> {
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let current = self.runtime();
        let result = config::load(&self.config_path, Some(&current));
        let took = started.elapsed();
        let next = match result {
            Ok(next) => Arc::new(next),
            Err(errors) => {
                current.metrics.reload_failed();
                tracing::error!(
                    trigger,
                    generation = self.generation(),
                    problems = errors.0.len(),
                    "config reload failed; the current config keeps serving"
                );
                for e in &errors.0 {
                    tracing::error!(trigger, "config error: {e}");
                }
                self.status.send_modify(|s| {
                    s.attempts += 1;
                    s.at = SystemTime::now();
                    s.errors = Some(errors.clone());
                });
                return Err(errors);
            }
        };
        self.runtime.store(next.clone());
        crate::upstream::activate(Some(&current.upstreams), &next.upstreams);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let summary = ReloadSummary::between(&current.inventory, &next.inventory);
        let metrics = &next.metrics;
        metrics.reload_succeeded(generation);
        metrics.retain(
            next.routes
                .routes()
                .iter()
                .map(|r| &*r.id)
                .chain(next.bff.endpoint_ids()),
            next.upstreams.keys().map(|u| &**u),
        );
        tracing::info!(
            "config reloaded ({trigger}): generation {generation}, version {}, {summary}, in {:.1}ms",
            next.version,
            took.as_secs_f64() * 1e3
        );
        self.status.send_modify(|s| {
            s.attempts += 1;
            s.generation = generation;
            s.at = SystemTime::now();
            s.errors = None;
        });
        Ok(Reloaded {
            runtime: next,
            generation,
            summary,
            took,
        })
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config is invalid.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A started gateway: its listeners' addresses and the handle to stop it.
pub struct Running {
    /// Shared state.
    pub gateway: Arc<Gateway>,
    http_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    accept_tasks: Vec<JoinHandle<()>>,
    tracker: Arc<ConnTracker>,
    admin: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    watcher: Option<config::watch::Watching>,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok((listener, local))
}

impl Running {
    /// Loads the config at `path`, binds the listeners and starts serving.
    pub async fn start(path: &Path) -> Result<Running, StartError> {
        let runtime = config::load(path, None)?;
        Self::start_with(path.to_path_buf(), runtime).await
    }

    /// Starts serving an already compiled runtime: public listener, admin listener (if any) and
    /// the config file watcher (if `server.watch`).
    pub async fn start_with(path: PathBuf, runtime: Runtime) -> Result<Running, StartError> {
        let listen = runtime.server.listen;
        let admin_listen = runtime.server.admin_listen;
        let gateway = Gateway::new(path, runtime);
        let (http, http_addr) = bind(listen).await?;
        let https = server::tls::bind(&gateway).await?;
        let https_addr = https.as_ref().map(|(_, addr)| *addr);
        let admin = match admin_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let (shutdown, rx) = watch::channel(false);
        let tracker = Arc::new(ConnTracker::default());
        let mut accept_tasks = vec![tokio::spawn(server::accept_plain(
            http,
            gateway.clone(),
            tracker.clone(),
            rx.clone(),
        ))];
        if let Some((listener, _)) = https {
            accept_tasks.push(tokio::spawn(server::tls::accept_tls(
                listener,
                gateway.clone(),
                tracker.clone(),
                rx,
            )));
        }
        tracing::info!(%http_addr, "listening (HTTP/1.1 and h2c)");
        let admin_addr = admin.as_ref().map(|(_, a)| *a);
        let admin = admin.map(|(listener, addr)| {
            let (stop, stop_rx) = watch::channel(false);
            tracing::info!(admin_addr = %addr, "admin API listening");
            if !addr.ip().is_loopback() && gateway.runtime().server.admin_token.is_none() {
                tracing::warn!(admin_addr = %addr, "the admin API listens beyond loopback without a token; set server.admin_token_env");
            }
            let task = tokio::spawn(crate::admin::serve(listener, gateway.clone(), stop_rx));
            (stop, task)
        });
        let watcher = config::watch::Watching::start(gateway.clone());
        Ok(Running {
            gateway,
            http_addr,
            admin_addr,
            https_addr,
            shutdown,
            accept_tasks,
            tracker,
            admin,
            watcher,
        })
    }

    /// Address of the plain HTTP listener.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Address of the HTTPS listener, when `[server.tls]` is configured.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Address of the admin listener, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Open client connections.
    pub fn open_connections(&self) -> usize {
        self.tracker.count()
    }

    /// First half of shutdown: readiness turns 503, the public listeners close (new connections
    /// are refused), and open connections are told to finish: HTTP/1 closes after the current
    /// response, HTTP/2 sends GOAWAY. The admin API keeps answering. Idempotent.
    pub async fn stop_accepting(&mut self) {
        self.gateway.start_draining();
        let _ = self.shutdown.send(true);
        for t in self.accept_tasks.drain(..) {
            let _ = t.await;
        }
        if let Some(w) = self.watcher.take() {
            w.stop();
        }
    }

    /// Graceful shutdown: [`Running::stop_accepting`], then let in-flight requests finish within
    /// `server.shutdown_grace`. Returns false when the grace period ran out first (the caller
    /// then exits, which closes what is left).
    pub async fn shutdown(mut self) -> bool {
        self.stop_accepting().await;
        let grace = self.gateway.runtime().server.shutdown_grace;
        let open = self.tracker.count();
        if open > 0 {
            tracing::info!(connections = open, ?grace, "draining open connections");
        }
        let drained = tokio::time::timeout(grace, self.tracker.wait_drained())
            .await
            .is_ok();
        if let Some((stop, task)) = self.admin.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
        drained
    }
}
