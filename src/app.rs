//! Process wiring: bind the listeners, start the accept loops, the admin API and the file
//! watcher, and stop them in order at shutdown.

pub mod probe;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::ConfigErrors;
use crate::gateway::Gateway;
use crate::runtime::{self, Runtime};
use crate::server::{self, ConnTracker};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config is invalid.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The config key that names it, e.g. `server.listen`.
        key: &'static str,
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
    health_addr: Option<SocketAddr>,
    shutdown: tokio::sync::watch::Sender<bool>,
    accept_tasks: Vec<JoinHandle<()>>,
    tracker: Arc<ConnTracker>,
    admin: Option<(tokio::sync::watch::Sender<bool>, JoinHandle<()>)>,
    health: Option<(tokio::sync::watch::Sender<bool>, JoinHandle<()>)>,
    watcher: Option<watch::Watching>,
}

async fn bind(
    addr: SocketAddr,
    key: &'static str,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, key, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, key, source })?;
    Ok((listener, local))
}

impl Running {
    /// Loads the config at `path`, binds the listeners and starts serving.
    pub async fn start(path: &Path) -> Result<Running, StartError> {
        let runtime = runtime::load(path, None)?;
        Self::start_with(path.to_path_buf(), runtime).await
    }

    /// Starts serving an already compiled runtime: public listener, admin listener (if any) and
    /// the config file watcher (if `server.watch`).
    pub async fn start_with(path: PathBuf, runtime: Runtime) -> Result<Running, StartError> {
        let listen = runtime.server.listen;
        let admin_listen = runtime.server.admin_listen;
        let health_listen = runtime.server.health_listen;
        runtime::activate(&runtime);
        let gateway = Gateway::new(path, runtime);
        let (http, http_addr) = bind(listen, "server.listen").await?;
        let https = bind_tls(&gateway).await?;
        let https_addr = https.as_ref().map(|(_, addr)| *addr);
        let admin = match admin_listen {
            Some(a) => Some(bind(a, "server.admin_listen").await?),
            None => None,
        };
        let health = match health_listen {
            Some(a) => Some(bind(a, "server.health_listen").await?),
            None => None,
        };
        let (shutdown, rx) = tokio::sync::watch::channel(false);
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
            let (stop, stop_rx) = tokio::sync::watch::channel(false);
            tracing::info!(admin_addr = %addr, "admin API listening");
            if !addr.ip().is_loopback() && gateway.runtime().server.admin_token.is_none() {
                tracing::warn!(admin_addr = %addr, "the admin API listens beyond loopback without a token; set server.admin_token_env");
            }
            let task = tokio::spawn(crate::admin::serve(listener, gateway.clone(), stop_rx));
            (stop, task)
        });
        let health_addr = health.as_ref().map(|(_, a)| *a);
        let health = health.map(|(listener, addr)| {
            let (stop, stop_rx) = tokio::sync::watch::channel(false);
            tracing::info!(health_addr = %addr, "probe listener (/healthz, /readyz) listening");
            let task = tokio::spawn(crate::admin::serve_probes(
                listener,
                gateway.clone(),
                stop_rx,
            ));
            (stop, task)
        });
        let watcher = watch::Watching::start(gateway.clone());
        Ok(Running {
            health_addr,
            health,
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

    /// Address of the probe listener (`server.health_listen`), if enabled.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_addr
    }

    /// First step of a SIGTERM shutdown: `/readyz` turns 503 at once while every listener keeps
    /// accepting and serving for `server.drain_delay`, so load balancers take the instance out
    /// before connections are refused. Returns when the delay is over.
    pub async fn announce_draining(&self) {
        self.gateway.start_draining();
        let delay = self.gateway.runtime().server.drain_delay;
        if !delay.is_zero() {
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "readiness is 503; still accepting for server.drain_delay"
            );
            tokio::time::sleep(delay).await;
        }
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
            tracing::info!(
                connections = open,
                grace_ms = grace.as_millis() as u64,
                "draining open connections"
            );
        }
        let drained = tokio::time::timeout(grace, self.tracker.wait_drained())
            .await
            .is_ok();
        for (stop, task) in [self.admin.take(), self.health.take()]
            .into_iter()
            .flatten()
        {
            let _ = stop.send(true);
            let _ = task.await;
        }
        drained
    }
}

/// Binds the HTTPS listener when `[server.tls]` is configured and records its port in the
/// gateway (for `redirect_https`); logs each certificate it serves.
async fn bind_tls(gateway: &Gateway) -> Result<Option<(TcpListener, SocketAddr)>, StartError> {
    let rt = gateway.runtime();
    let Some(tls) = rt.tls.as_ref() else {
        return Ok(None);
    };
    let addr = tls.listen;
    let bind_error = |source| StartError::Bind {
        addr,
        key: "server.tls.listen",
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    gateway.set_https_port(bound.port());
    for c in &tls.certificates {
        tracing::info!(
            file = %c.file.display(),
            names = ?c.meta.dns_names,
            not_after = c.meta.not_after,
            "serving certificate"
        );
    }
    let client_auth = match tls.client_auth {
        crate::tls::ClientAuth::Off => "off",
        crate::tls::ClientAuth::Optional => "optional",
        crate::tls::ClientAuth::Required => "required",
    };
    tracing::info!(https_addr = %bound, client_auth, "listening (HTTPS: h2 and HTTP/1.1)");
    Ok(Some((listener, bound)))
}
