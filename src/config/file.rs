//! Serde mirror of `gateway.toml`: shapes only, every table `deny_unknown_fields`.
//! Values that need checking keep their span (`Spanned`) so errors can point at them;
//! nothing here is used at request time (see `config::runtime`).

pub mod answer;
pub mod auth;
pub mod balance;
pub mod cluster;
pub mod compression;
pub mod cqrs;
pub mod discovery;
pub mod edge;
pub mod rate_limit;
pub mod resilience;
pub mod saga;
pub mod script;
pub mod trace;
pub mod traffic;

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use self::auth::{AuthFile, AuthRuleFile};
use self::rate_limit::{RateLimitFile, RateLimitRefFile};
use self::traffic::{FaultFile, MirrorFile, SplitSideFile};

/// A string value with its position in the file.
pub type Text = Spanned<String>;

/// The whole `gateway.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// `[server]`: listeners and process settings.
    #[serde(default)]
    pub server: ServerFile,
    /// `[limits]`: protection against slow or greedy clients.
    #[serde(default)]
    pub limits: LimitsFile,
    /// `[log]`: access log settings.
    #[serde(default)]
    pub log: LogFile,
    /// `[upstreams.NAME]`.
    #[serde(default)]
    pub upstreams: BTreeMap<Spanned<String>, UpstreamFile>,

    /// `[[routes]]`, in file order (file order breaks ties between equally specific routes).
    #[serde(default)]
    pub routes: Vec<RouteFile>,

    /// `[bff]`: where client profiles live.
    #[serde(default)]
    pub bff: BffSettingsFile,

    /// `[auth]`: JWT providers.
    #[serde(default)]
    pub auth: AuthFile,
    /// `[rate_limits.NAME]`: rate-limit policies.
    #[serde(default)]
    pub rate_limits: BTreeMap<Spanned<String>, RateLimitFile>,
    /// `[cluster]`: the store shared by several instances.
    pub cluster: Option<Spanned<cluster::ClusterFile>>,
    /// `[scripts.NAME]`: sandboxed Luau scripts that routes and BFF endpoints run.
    #[serde(default)]
    pub scripts: BTreeMap<Spanned<String>, script::ScriptFile>,
    /// `[compression]`: response compression; off when absent.
    pub compression: Option<Spanned<compression::CompressionFile>>,
    /// `[ip_lists.NAME]`: named client address allow/deny lists.
    #[serde(default)]
    pub ip_lists: BTreeMap<Spanned<String>, edge::IpListFile>,
    /// `[cors.NAME]`: named cross-origin policies.
    #[serde(default)]
    pub cors: BTreeMap<Spanned<String>, edge::CorsFile>,
    /// `[tracing]`: W3C trace context and OTLP span export.
    pub tracing: Option<Spanned<trace::TracingFile>>,
    /// `[discovery]`: resolvers, the registry file, etcd endpoints.
    pub discovery: Option<Spanned<discovery::DiscoveryFile>>,
    /// `[saga]`: the durable saga log (saga endpoints need it).
    pub saga: Option<Spanned<saga::SagaFile>>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// Plain HTTP/1.1 + h2c listener; default `127.0.0.1:8080`.
    pub listen: Option<Text>,
    /// Admin listener; default `127.0.0.1:9901`; `""` disables it.
    pub admin_listen: Option<Text>,
    /// Tokio worker threads; default: number of CPUs.
    pub workers: Option<Spanned<i64>>,
    /// Peers (IPs or CIDRs) whose X-Forwarded-For is kept and appended to.
    #[serde(default)]
    pub trusted_proxies: Vec<Text>,
    /// How long in-flight requests may take to finish on shutdown; default `30s`.
    pub shutdown_grace: Option<Text>,
    /// Environment variable holding the admin API's bearer token; default: no token.
    pub admin_token_env: Option<Text>,
    /// Reload when a config file changes; default `true`.
    pub watch: Option<bool>,
    /// Quiet time after the last file event before a reload; default `100ms`.
    pub reload_debounce: Option<Text>,
    /// `[server.tls]`: the optional HTTPS listener.
    pub tls: Option<Spanned<TlsFile>>,
    /// Client header names with `_`: `"drop"` (default), `"allow"` or `"reject"`.
    pub underscores_in_headers: Option<Text>,
    /// `%2F` in request paths: `"reject"` (default) or `"keep"`.
    pub encoded_slashes: Option<Text>,
    /// `[ip_lists.NAME]` the admin listener's clients must pass (the peer address).
    pub admin_ip_list: Option<Text>,
    /// How long listeners keep accepting after SIGTERM while `/readyz` says 503; default `5s`.
    pub drain_delay: Option<Text>,
    /// A probe listener serving only `/healthz` and `/readyz`; default: none.
    pub health_listen: Option<Text>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Time allowed to receive a request's headers; default `10s`.
    pub header_read_timeout: Option<Text>,
    /// Largest request head (request line + headers); default `16KiB`, at least `8KiB`.
    pub max_header_bytes: Option<Text>,
    /// Most request headers; default `100`.
    pub max_headers: Option<Spanned<i64>>,
    /// Largest request body; default `10MiB`.
    pub max_body_bytes: Option<Text>,
    /// Idle HTTP/2 connections are closed after this; default `60s`.
    pub idle_timeout: Option<Text>,
    /// Idle HTTP/1 keep-alive connections are closed after this; default `75s`.
    pub keepalive_timeout: Option<Text>,
    /// Open client connections per listener; default `10000`.
    pub max_connections: Option<Spanned<i64>>,
    /// Memory one worker thread's script VM may hold; default `16MiB`.
    pub script_memory: Option<Text>,
    /// An upgraded tunnel (WebSocket...) with no bytes either way for this long is closed;
    /// default `5m`.
    pub tunnel_idle_timeout: Option<Text>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// One line per request at info level on target `access`; default `true`.
    pub access_log: Option<bool>,
    /// Also append access lines to this file (relative to gateway.toml); reopened on SIGUSR1.
    pub access_log_file: Option<Text>,
    /// Format of the file's lines: `"text"` or `"json"`; default: as on stderr (`--log-format`).
    pub access_log_format: Option<Text>,
}

/// `[upstreams.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    /// `host:port` or `http://host:port` entries, or `{ address, weight }` tables (may be
    /// empty, or left out, with `discovery`).
    #[serde(default = "no_endpoints")]
    pub endpoints: Spanned<Vec<Spanned<balance::EndpointFile>>>,
    /// Time to the response head; default `30s`.
    pub timeout: Option<Text>,
    /// Time to open a TCP connection; default `2s`.
    pub connect_timeout: Option<Text>,
    /// How long an endpoint that refused a connection is skipped; default `10s`.
    pub fail_timeout: Option<Text>,
    /// Idle pooled connections kept per endpoint; default `256`.
    pub max_idle_per_endpoint: Option<Spanned<i64>>,
    /// Idle pooled connections are closed after this; default `90s`.
    pub pool_idle_timeout: Option<Text>,
    /// Speak TLS to every endpoint (as if each were `https://`); default: per endpoint scheme.
    pub tls: Option<Spanned<bool>>,
    /// PEM CA bundle that replaces the system roots for verifying the endpoints.
    pub ca_file: Option<Text>,
    /// Client certificate for upstream mTLS.
    pub client_cert: Option<Spanned<CertKeyFile>>,
    /// Name to send as SNI and verify the endpoints' certificates against; default: each
    /// endpoint's host.
    pub server_name: Option<Text>,
    /// `round_robin` (default, weighted), `least_request`, `consistent_hash` or `random`.
    pub lb: Option<Text>,
    /// `consistent_hash` key: `header:NAME`, `cookie:NAME`, `claim:NAME`, `ip` or `path`.
    pub hash_key: Option<Text>,
    /// Ramp a joining endpoint's weight up over this window; default: off.
    pub slow_start: Option<Text>,
    /// `[upstreams.NAME.health]`: active health checks; default: none.
    pub health: Option<Spanned<balance::HealthFile>>,
    /// `[upstreams.NAME.outlier]`: passive ejection; default: none.
    pub outlier: Option<Spanned<balance::OutlierFile>>,
    /// `http1` (default), `h2` (h2c on http://, ALPN h2 on https://) or `auto` (ALPN).
    pub protocol: Option<Text>,
    /// HTTP/2 streams in flight per upstream connection before another connection is opened;
    /// default `100`.
    pub max_concurrent_streams: Option<Spanned<i64>>,
    /// `[upstreams.NAME.retry]`: retries, backoff and budget; default: none.
    pub retry: Option<Spanned<resilience::RetryFile>>,
    /// `[upstreams.NAME.circuit]`: bulkhead limits; default: none.
    pub circuit: Option<Spanned<resilience::CircuitFile>>,
    /// `discovery = { registry = true }` (or `dns`, `srv`, `etcd`): endpoints that change at
    /// run time.
    pub discovery: Option<Spanned<discovery::UpstreamDiscoveryFile>>,
}

fn no_endpoints() -> Spanned<Vec<Spanned<balance::EndpointFile>>> {
    Spanned::new(0..0, Vec::new())
}

/// `[[routes]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// Unique id, used in logs and metrics.
    pub id: Text,
    /// What requests this route takes.
    #[serde(rename = "match")]
    pub matcher: Spanned<MatchFile>,
    /// Upstream name from `[upstreams]`; exactly one of `upstream`, `split`, `redirect` and
    /// `respond`.
    pub upstream: Option<Text>,
    /// Answer with a redirect instead of forwarding.
    pub redirect: Option<Spanned<answer::RedirectFile>>,
    /// Answer with a fixed status and body instead of forwarding.
    pub respond: Option<Spanned<answer::RespondFile>>,
    /// Weighted split over upstreams (canary), instead of `upstream`.
    pub split: Option<Spanned<Vec<SplitSideFile>>>,
    /// What keeps a client on its split side: `cookie:NAME`, `header:NAME`, `claim:NAME`, `ip`.
    pub sticky: Option<Text>,
    /// `Max-Age` of the cookie `sticky = "cookie:NAME"` sets; default `1d`.
    pub sticky_max_age: Option<Text>,
    /// Copies of requests sent to a shadow upstream (dark launch).
    pub mirror: Option<Spanned<MirrorFile>>,
    /// Injected delays and aborts.
    pub fault: Option<Spanned<FaultFile>>,
    /// Removed from the start of the path before forwarding.
    pub strip_prefix: Option<Text>,
    /// Put in front of the path (after `strip_prefix`) before forwarding.
    pub rewrite_prefix: Option<Text>,
    /// Overrides the upstream's `timeout`.
    pub timeout: Option<Text>,
    /// Keep the client's Host header instead of the endpoint's; default `false`.
    pub preserve_host: Option<bool>,
    /// Replaces the upstream's `[retry]` policy for this route (same keys).
    pub retry: Option<Spanned<resilience::RetryFile>>,
    /// Retry non-idempotent methods (POST, PATCH) after they reached the upstream; default
    /// `false`.
    pub retry_non_idempotent: Option<bool>,
    /// Changes to the request before it goes upstream.
    #[serde(default)]
    pub request_headers: HeaderOpsFile,
    /// Changes to the response before it goes to the client.
    #[serde(default)]
    pub response_headers: HeaderOpsFile,
    /// `"required"`: only requests on a connection with a verified client certificate pass;
    /// default `"optional"`.
    pub client_cert: Option<Text>,
    /// JWT requirement; omit for a public route.
    pub auth: Option<Spanned<AuthRuleFile>>,
    /// Rate-limit policy name(s); every one must admit.
    pub rate_limit: Option<Spanned<RateLimitRefFile>>,
    /// Script names from `[scripts]`, run in order after the guards.
    pub scripts: Option<script::ScriptRefs>,
    /// Protocols a client may switch to (`Upgrade`); default `["websocket"]`; never `h2c`.
    pub upgrades: Option<Spanned<Vec<Text>>>,
    /// Most upgraded tunnels (WebSocket...) open at once through this route; default: no cap.
    pub max_tunnels: Option<Spanned<i64>>,
    /// `false` sends this route's answers uncompressed even with `[compression]`; default `true`.
    pub compress: Option<Spanned<bool>>,
    /// `[ip_lists.NAME]` the client address must pass.
    pub ip_list: Option<Text>,
    /// `[cors.NAME]` policy answering preflights and adding CORS headers.
    pub cors: Option<Text>,
    /// CQRS: non-safe methods go to this upstream, safe ones (GET, HEAD, OPTIONS) to `upstream`.
    pub write_upstream: Option<Text>,
    /// After a key's successful write, its reads go to the write side for a window.
    pub read_your_writes: Option<Spanned<cqrs::ReadYourWritesFile>>,
}

/// `match = { ... }` of a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchFile {
    /// Segment-aware prefix: `/api/users` takes `/api/users` and `/api/users/7`, not `/api/usersX`.
    pub path_prefix: Option<Text>,
    /// Exact path.
    pub path: Option<Text>,
    /// Allowed methods; default all.
    #[serde(default)]
    pub methods: Vec<Text>,
    /// `api.example.com` or `*.example.com`.
    pub host: Option<Text>,
    /// Header equality conditions (all must hold).
    #[serde(default)]
    pub headers: BTreeMap<Spanned<String>, Text>,
    /// Cookie conditions: exact value, or `"*"` for present.
    #[serde(default)]
    pub cookies: BTreeMap<Spanned<String>, Text>,
    /// Query parameter conditions: exact (decoded) value, or `"*"` for present.
    #[serde(default)]
    pub query: BTreeMap<Spanned<String>, Text>,
    /// Verified-claim conditions (routes with `auth` only): exact text, or `"*"` for present.
    #[serde(default)]
    pub claims: BTreeMap<Spanned<String>, Text>,
}

/// `add`, `set` and `remove` header operations.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOpsFile {
    /// Appended (an existing value is kept).
    #[serde(default)]
    pub add: BTreeMap<Spanned<String>, Text>,
    /// Replaced (any existing value is removed first).
    #[serde(default)]
    pub set: BTreeMap<Spanned<String>, Text>,
    /// Removed.
    #[serde(default)]
    pub remove: Vec<Text>,
}

/// `[bff]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BffSettingsFile {
    /// Folder of client profiles; default `bff/` beside gateway.toml.
    pub dir: Option<Text>,
    /// Profile for clients that name none (or an unknown one) on unmounted paths; default none.
    pub default_profile: Option<Text>,
}

// --- TLS (server listener and upstream client) ---------------------------------------------

/// `[server.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// HTTPS listener address.
    pub listen: Text,
    /// Certificates; SNI picks by the names in each certificate. The first is the default.
    pub certificates: Spanned<Vec<Spanned<CertKeyFile>>>,
    /// Refuse handshakes without SNI or with a name no certificate has; default `false`
    /// (those clients get the first certificate).
    pub strict_sni: Option<bool>,
    /// PEM CA bundle that client certificates are verified against (enables mTLS).
    pub client_ca: Option<Text>,
    /// `"required"` (default when `client_ca` is set) or `"optional"`.
    pub client_auth: Option<Text>,
    /// Header that carries the verified client certificate upstream; default: none.
    pub forward_client_cert: Option<Text>,
    /// Oldest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<Text>,
    /// Time allowed for a TLS handshake; default `10s`.
    pub handshake_timeout: Option<Text>,
    /// Answer every request on the plain listener with a 308 to https; default `false`.
    pub redirect_https: Option<bool>,
    /// Port in redirect URLs; default: the HTTPS listener's port.
    pub redirect_port: Option<Spanned<i64>>,
    /// `Strict-Transport-Security` on HTTPS responses; default: not sent.
    pub hsts: Option<Spanned<HstsFile>>,
}

/// A certificate chain and its private key (PEM files).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertKeyFile {
    /// PEM certificate chain, leaf first.
    pub cert: Text,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1); default: read from the `cert` file.
    pub key: Option<Text>,
}

/// `hsts = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HstsFile {
    /// `max-age`; default `365d`.
    pub max_age: Option<Text>,
    /// Adds `includeSubDomains`; default `false`.
    pub include_subdomains: Option<bool>,
    /// Adds `preload`; default `false`.
    pub preload: Option<bool>,
}
