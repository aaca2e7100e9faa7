//! The compiled config: one immutable `Runtime` swapped whole on reload. `load()` reads the
//! files and runs each feature's compile step; state that must survive a reload is lent from
//! the previous runtime to the parts whose settings did not change.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub mod lifecycle;
mod load;
mod server;
pub mod warnings;

pub use load::load;
pub use server::{ListenOverrides, set_listen_overrides};

/// Puts a runtime's process-wide settings in force (at start and after every reload): logs its
/// config warnings, opens the access-log file, publishes certificate expiry.
pub fn activate(rt: &Runtime) {
    for w in &rt.warnings {
        tracing::warn!(target: "config", "{}", w.warning());
    }
    if let Err(e) = crate::access_log::file::activate(rt.access_log_file.as_ref()) {
        tracing::error!("{e}");
    }
    if let Some(store) = &rt.saga {
        store.activate(&rt.upstreams);
    }
    let certs = rt.tls.iter().flat_map(|t| &t.certificates);
    rt.metrics
        .set_certificates(certs.map(|c| (c.file.display().to_string(), c.meta.not_after)));
}

use crate::config::inventory::Inventory;
use crate::metrics::Metrics;
use crate::net::Cidr;
use crate::route::RouteTable;
use crate::upstream::Upstream;
use lifecycle::{AdminToken, WatchSettings};

/// Everything that changes with config, swapped whole on reload.
#[derive(Debug)]
pub struct Runtime {
    /// Content hash of every source file, as 16 hex digits.
    pub version: String,
    /// When this runtime was compiled.
    pub loaded_at: SystemTime,
    /// Every file this runtime was built from (gateway.toml first), plus the BFF profiles folder
    /// (so adding or removing a profile is noticed) followed by each profile file.
    pub sources: Vec<PathBuf>,
    /// Listener and process settings.
    pub server: ServerSettings,
    /// Client protection limits.
    pub limits: Limits,
    /// Whether to write one access-log line per request.
    pub access_log: bool,
    /// `[log] access_log_file`: the file sink for access lines, if any.
    pub access_log_file: Option<crate::access_log::file::FileSettings>,
    /// Compiled route table.
    pub routes: RouteTable,
    /// Upstream clusters by name.
    pub upstreams: BTreeMap<Arc<str>, Arc<Upstream>>,
    /// BFF client profiles (`bff/*.toml`).
    pub bff: crate::bff::Bff,
    /// The gateway's metrics registry (one per process, carried over on reload).
    pub metrics: Arc<Metrics>,
    /// Named parts with fingerprints, for the reload summary.
    pub inventory: Inventory,
    /// `[server.tls]`: the HTTPS listener's certificates and settings, if configured.
    pub tls: Option<crate::tls::TlsSettings>,
    /// JWT providers and the identity headers stripped from every request.
    pub auth: crate::filter::auth::AuthRuntime,
    /// Rate-limit policies (with their buckets) by name.
    pub rate_limits: crate::filter::rate_limit::compile::Policies,
    /// `[cluster]`: the store shared with other instances (kept across reloads when unchanged).
    pub cluster: Option<std::sync::Arc<crate::cluster::Cluster>>,
    /// `[scripts.NAME]`, compiled (routes and endpoints hold their own chains).
    pub scripts: crate::script::Scripts,
    /// `[compression]`: response compression; `None` when not configured.
    pub compression: Option<Arc<crate::compress::Compression>>,
    /// `[server] admin_ip_list`: the admin listener's peers must pass it.
    pub admin_ip_list: Option<Arc<crate::filter::ip_list::IpList>>,
    /// `[tracing]`: trace context and span export (`None`: no tracing work at all).
    pub tracing: Option<Arc<crate::trace::Tracer>>,
    /// `[saga]`: the durable saga log (opened by [`activate`] at start; kept across reloads).
    pub saga: Option<Arc<crate::saga::store::Store>>,
    /// Config warnings (file:line:col), printed by `check` and logged at load.
    pub warnings: Vec<crate::config::ConfigError>,
}

impl Runtime {
    /// The process-wide settings the guards read.
    pub fn guard_env(&self) -> crate::filter::GuardEnv<'_> {
        crate::filter::GuardEnv {
            trusted_proxies: &self.server.trusted_proxies,
            forwarded_claims: &self.auth.forwarded_headers,
            forward_client_cert: self
                .tls
                .as_ref()
                .and_then(|t| t.forward_client_cert.as_ref()),
        }
    }

    /// The process-wide settings a BFF request reads.
    pub fn bff_env(&self) -> crate::bff::BffEnv<'_> {
        crate::bff::BffEnv {
            max_body_bytes: self.limits.max_body_bytes,
            trusted_proxies: &self.server.trusted_proxies,
            forwarded_claims: &self.auth.forwarded_headers,
        }
    }
}

/// `[server]`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Plain HTTP listener.
    pub listen: SocketAddr,
    /// Admin listener, if enabled.
    pub admin_listen: Option<SocketAddr>,
    /// Tokio worker threads (`None`: number of CPUs).
    pub workers: Option<usize>,
    /// Peers whose forwarding headers are trusted.
    pub trusted_proxies: Vec<Cidr>,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long the listeners keep accepting while `/readyz` says 503.
    pub drain_delay: Duration,
    /// Probe listener (`/healthz`, `/readyz` only), if enabled.
    pub health_listen: Option<SocketAddr>,
    /// Bearer token the admin API requires, if any.
    pub admin_token: Option<AdminToken>,
    /// Reload on file changes.
    pub watch: WatchSettings,
    /// What happens to client header names with `_`.
    pub underscores_in_headers: crate::filter::headers::underscore::UnderscorePolicy,
    /// What `%2F` in a request path does.
    pub encoded_slashes: crate::net::path::EncodedSlashes,
}

/// `[limits]`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time from connection open (first request) or a request's first byte to its complete head.
    pub header_read_timeout: Duration,
    /// Largest request head in bytes.
    pub max_header_bytes: usize,
    /// Most headers per request.
    pub max_headers: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: u64,
    /// Idle HTTP/2 connection lifetime (no stream in flight).
    pub idle_timeout: Duration,
    /// Idle HTTP/1 keep-alive connection lifetime (between requests).
    pub keepalive_timeout: Duration,
    /// Open connections per listener.
    pub max_connections: usize,
    /// Idle upgraded tunnels are closed after this.
    pub tunnel_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 10 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            tunnel_idle_timeout: Duration::from_secs(300),
        }
    }
}
