//! The running gateway: the current runtime behind `ArcSwap`, listeners, reload and shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
    /// Bound port of the HTTPS listener (0: none), the target of `redirect_https`.
    https_port: AtomicU16,
}

impl Gateway {
    /// Wraps a compiled runtime.
    pub fn new(config_path: PathBuf, runtime: Runtime) -> Arc<Gateway> {
        Arc::new(Gateway {
            runtime: ArcSwap::from_pointee(runtime),
            config_path,
            generation: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            reload_lock: std::sync::Mutex::new(()),
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

    /// Reads, validates and compiles the whole config, then swaps it in; on any error the
    /// current runtime keeps serving and the errors are returned.
    pub fn reload(&self) -> Result<Arc<Runtime>, ConfigErrors> {
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.runtime();
        let next = Arc::new(config::load(&self.config_path, Some(&current))?);
        self.runtime.store(next.clone());
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(next)
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
    https_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    accept_tasks: Vec<JoinHandle<()>>,
    tracker: Arc<ConnTracker>,
}

impl Running {
    /// Loads the config at `path`, binds the listeners and starts serving.
    pub async fn start(path: &Path) -> Result<Running, StartError> {
        let runtime = config::load(path, None)?;
        Self::start_with(path.to_path_buf(), runtime).await
    }

    /// Starts serving an already compiled runtime.
    pub async fn start_with(path: PathBuf, runtime: Runtime) -> Result<Running, StartError> {
        let listen = runtime.server.listen;
        let gateway = Gateway::new(path, runtime);
        let http = TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: listen,
                source,
            })?;
        let http_addr = http.local_addr().map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
        let https = server::tls::bind(&gateway).await?;
        let https_addr = https.as_ref().map(|(_, addr)| *addr);
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
        Ok(Running {
            gateway,
            http_addr,
            https_addr,
            shutdown,
            accept_tasks,
            tracker,
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

    /// Open client connections.
    pub fn open_connections(&self) -> usize {
        self.tracker.count()
    }

    /// Graceful shutdown: stop accepting, let in-flight requests finish within
    /// `server.shutdown_grace`. Returns false when the grace period ran out first.
    pub async fn shutdown(self) -> bool {
        self.gateway.draining.store(true, Ordering::SeqCst);
        let _ = self.shutdown.send(true);
        for t in self.accept_tasks {
            let _ = t.await;
        }
        let grace = self.gateway.runtime().server.shutdown_grace;
        tokio::time::timeout(grace, self.tracker.wait_drained())
            .await
            .is_ok()
    }
}
