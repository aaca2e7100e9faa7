//! Upstream clusters: endpoints, their selection (`balance`), health (`health`, `outlier`,
//! `state`), and the send loop shared by proxied routes and BFF part calls: pick an endpoint
//! not tried yet, send, report the outcome, fail over to another endpoint when a connection is
//! refused. `transport` carries requests.

mod activate;
pub mod balance;
pub mod circuit;
pub mod compile;
pub mod compile_policy;
mod deadline;
pub mod discovery;
pub mod health;
mod host;
mod members;
pub mod outlier;
mod parse;
mod replay;
pub mod resilience;
pub mod retry;
mod served;
mod spans;
pub mod state;
pub mod status;
pub mod tls;
pub mod transport;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tokio::time::Instant as Deadline;

use crate::body::{Reclaim, RequestBody, UpstreamBody};
use crate::error::GatewayError;
use crate::filter::headers::X_REQUEST_ID;
use crate::metrics::Metrics;
use crate::net::added::{Added, Extra, NONE};
pub use activate::activate;
use balance::{BalanceSettings, KeySource, Pick, Tried};
use health::HealthSettings;
pub use host::shadow_host;
use host::{Shadow, host_header};
pub use members::Members;
use members::{MemberEnv, wanted};
use outlier::{Outcome, OutlierSettings};
pub use parse::parse_endpoint;
use replay::Replay;
pub use served::{Served, error_chain};
use state::{Board, EndpointState, Families, InFlight};
use transport::Transport;

/// Settings that define an upstream; equal settings across a reload keep the same `Upstream`
/// (its pooled connections, round-robin position and endpoint health). Changed settings build
/// a new one that still keeps the state of the endpoints it shares with the old.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// Endpoint addresses as `scheme://host:port`.
    pub endpoints: Vec<(Scheme, Authority)>,
    /// Time to the response head.
    pub timeout: Duration,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// How long a refusing endpoint is skipped.
    pub fail_timeout: Duration,
    /// Idle pooled connections per endpoint.
    pub max_idle_per_endpoint: usize,
    /// Idle pooled connection lifetime.
    pub pool_idle_timeout: Duration,
    /// Roots, client certificate and SNI for `https` endpoints.
    pub tls: tls::UpstreamTls,
    /// `lb`, `hash_key`, weights, `slow_start`, panic threshold.
    pub balance: BalanceSettings,
    /// `[upstreams.NAME.health]`.
    pub health: Option<Arc<HealthSettings>>,
    /// `[upstreams.NAME.outlier]`.
    pub outlier: Option<OutlierSettings>,
    /// `protocol`: HTTP/1.1, HTTP/2, or chosen by ALPN.
    pub protocol: transport::Protocol,
    /// HTTP/2 streams in flight per upstream connection before another is opened.
    pub max_concurrent_streams: u32,
    /// `[upstreams.NAME.retry]` and `[upstreams.NAME.circuit]`.
    pub resilience: resilience::ResilienceSettings,
    /// `discovery = {...}`: endpoints that change at run time, besides `endpoints`.
    pub discovery: Option<discovery::DiscoverySettings>,
}

impl UpstreamSettings {
    /// Whether connections made under `self` can serve `other` (same pool settings and TLS).
    fn same_transport(&self, other: &UpstreamSettings) -> bool {
        self.connect_timeout == other.connect_timeout
            && self.max_idle_per_endpoint == other.max_idle_per_endpoint
            && self.pool_idle_timeout == other.pool_idle_timeout
            && self.tls == other.tls
            && self.protocol == other.protocol
            && self.max_concurrent_streams == other.max_concurrent_streams
            && connection_limits(self) == connection_limits(other)
    }
}

/// `max_connections` and `max_pending`: the transport enforces them.
fn connection_limits(s: &UpstreamSettings) -> Option<(u32, u32)> {
    s.resilience
        .circuit
        .map(|c| (c.max_connections, c.max_pending))
}

/// One address of an upstream.
#[derive(Clone)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: Authority,
    /// The `Host` sent when the route does not preserve the client's: the authority without a
    /// default port, made once here instead of formatted on every request.
    host_header: HeaderValue,
    /// Relative share of traffic.
    pub weight: u32,
    /// Health, ejection, counts: kept across reloads while the endpoint stays.
    pub state: Arc<EndpointState>,
    /// Where it came from (config or a discovery source).
    pub source: discovery::Source,
    /// Its connections: dropped with the last set that lists it (idle connections close).
    pub pool: Arc<transport::Pool>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl Endpoint {
    /// The endpoint as an operator wrote it: `host:port`, or `https://host:port`.
    pub fn label(&self) -> String {
        label(&self.scheme, &self.authority)
    }
}

fn label(scheme: &Scheme, authority: &Authority) -> String {
    if *scheme == Scheme::HTTPS {
        format!("https://{authority}")
    } else {
        authority.to_string()
    }
}

/// A named upstream cluster.
pub struct Upstream {
    /// Name from the config.
    pub name: Arc<str>,
    /// Its settings (compared on reload).
    pub settings: UpstreamSettings,
    members: ArcSwap<Members>,
    transport: Arc<Transport>,
    board: Arc<Board>,
    /// The discovery source, when the endpoint set changes at run time.
    live: Option<discovery::Live>,
    families: Option<Families>,
    refreshing: std::sync::Mutex<()>,
    panics: Counter,
    /// Time to the response head of each answered exchange.
    latency: Histogram,
    /// Retry budget and circuit state.
    resilience: resilience::Resilience,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish()
    }
}

impl Upstream {
    /// Builds an upstream with a fresh connection pool and fresh endpoint state, registered
    /// in no metrics registry (tests, benchmarks).
    pub fn new(name: Arc<str>, settings: UpstreamSettings) -> Upstream {
        Upstream::build(name, settings, None, None)
    }

    /// Builds an upstream; from `previous` (the same upstream in the running config) it keeps
    /// the connection pool when the transport settings are unchanged, the state of endpoints
    /// still listed, and their health checkers when the check settings are unchanged. An
    /// endpoint that joins a running upstream ramps up under `slow_start`.
    pub fn build(
        name: Arc<str>,
        settings: UpstreamSettings,
        previous: Option<&Upstream>,
        metrics: Option<&Metrics>,
    ) -> Upstream {
        let transport = previous
            .filter(|p| p.settings.same_transport(&settings))
            .map_or_else(
                || Arc::new(Transport::new(&settings)),
                |p| p.transport.clone(),
            );
        let board = previous.map_or_else(Default::default, |p| p.board.clone());
        let families = metrics.map(Families::of);
        let live = settings.discovery.as_ref().map(|d| {
            discovery::Live::build(d, previous.and_then(|p| p.live.as_ref()), &name, metrics)
        });
        let version = live.as_ref().map_or(0, discovery::Live::version);
        let ramp = previous.is_some() && !settings.balance.slow_start.is_zero();
        let old = previous.map(|p| p.members.load_full());
        let wanted = wanted(&settings, live.as_ref());
        let members = Members::build(
            &MemberEnv {
                name: &name,
                settings: &settings,
                board: &board,
                families: families.as_ref(),
                transport: &transport,
                ramp,
            },
            wanted,
            old.as_deref(),
            version,
        );
        let panics = metrics.map_or_else(Counter::default, |m| {
            let family: Family<[(&'static str, String); 1], Counter> = m.family(
                "portico_upstream_panic",
                "Endpoint choices made in panic mode (too few usable endpoints, so all were candidates)",
                Family::default,
            );
            family.get_or_create_owned(&[("upstream", name.to_string())])
        });
        let latency =
            metrics.map_or_else(|| Histogram::new([0.0; 0]), |m| m.upstream_latency(&name));
        // Endpoints that left or joined change who is usable.
        board.bump();
        let resilience = resilience::Resilience::build(
            &name,
            &settings.resilience,
            previous.map(|p| &p.resilience),
            metrics,
        );
        Upstream {
            name,
            settings,
            members: ArcSwap::from_pointee(members),
            transport,
            board,
            live,
            families,
            refreshing: std::sync::Mutex::new(()),
            panics,
            latency,
            resilience,
        }
    }

    /// The endpoint set now (static endpoints in config order, then discovered ones). A
    /// request holds the set it started with, so an endpoint removed meanwhile still serves
    /// the requests already sent to it.
    #[inline]
    pub fn endpoints(&self) -> Arc<Members> {
        let set = self.members.load_full();
        match &self.live {
            None => set,
            Some(live) if live.version() == set.version => set,
            Some(live) => self.refresh(live, set),
        }
    }

    /// The discovery source, if the set changes at run time.
    pub fn live(&self) -> Option<&discovery::Live> {
        self.live.as_ref()
    }

    /// Rebuilds the set from the source's current instances, keeping the state of endpoints
    /// that stay; one rebuild at a time (the others go on with the set they loaded).
    #[cold]
    fn refresh(&self, live: &discovery::Live, set: Arc<Members>) -> Arc<Members> {
        let Ok(_one) = self.refreshing.try_lock() else {
            return set;
        };
        let current = self.members.load_full();
        let version = live.version();
        if current.version == version {
            return current;
        }
        let next = Members::build(
            &MemberEnv {
                name: &self.name,
                settings: &self.settings,
                board: &self.board,
                families: self.families.as_ref(),
                transport: &self.transport,
                ramp: !self.settings.balance.slow_start.is_zero(),
            },
            wanted(&self.settings, Some(live)),
            Some(&current),
            version,
        );
        next.checkers.iter().for_each(|c| c.start());
        let labels = |x: &Members| x.endpoints.iter().map(Endpoint::label).collect::<Vec<_>>();
        let (added, removed) = served::changes(&labels(&current), &labels(&next));
        tracing::info!(upstream = %self.name, added, removed, "discovered endpoints changed");
        let next = Arc::new(next);
        self.members.store(next.clone());
        self.board.bump();
        next
    }

    /// Starts the active health checks that are not running yet, and the discovery source's
    /// background work (idempotent; needs a tokio runtime). Checkers carried over from the
    /// previous config keep their schedule.
    pub fn start_health_checks(&self) {
        for c in &self.members.load().checkers {
            c.start();
        }
        if let Some(live) = &self.live {
            live.start();
        }
    }

    /// The request's consistent-hash key (`None` unless `lb = "consistent_hash"` and the
    /// request carries the key).
    #[inline]
    pub fn key(&self, src: &KeySource<'_>) -> Option<u64> {
        self.members.load().balancer.key(src)
    }

    /// Chooses an endpoint of the current set that is not in `tried` (see
    /// [`Balancer::pick`]); counts panic-mode choices.
    #[inline]
    pub fn select(&self, key: Option<u64>, tried: &Tried) -> Option<Pick> {
        self.select_in(&self.endpoints(), key, tried)
    }

    #[inline]
    fn select_in(&self, set: &Members, key: Option<u64>, tried: &Tried) -> Option<Pick> {
        let pick =
            balance::rng::with_thread(|rng| set.balancer.pick(&set.endpoints, key, tried, rng))?;
        if pick.panic {
            self.panics.inc();
        }
        Some(pick)
    }

    /// Records how an attempt on endpoint `index` of `set` ended (counts, outlier ejection,
    /// the refused-connection skip).
    #[inline]
    pub fn report(&self, set: &Members, index: usize, outcome: Outcome) {
        outlier::report(
            &set.endpoints,
            index,
            outcome,
            self.settings.outlier.as_ref(),
            self.settings.fail_timeout,
        );
    }

    /// Proxies a client request (its URI holds only path and query) with the gateway's fields
    /// held beside it (`added`, see [`Added`]); `reclaim` gets the body
    /// back for another endpoint if the first refused the connection before reading it. `key`
    /// is the request's consistent-hash key ([`Upstream::key`]).
    /// (A plain function: an `async fn` wrapper would hold a second copy of `req`.)
    #[allow(clippy::too_many_arguments)]
    pub fn forward<'a>(
        &'a self,
        req: Request<RequestBody>,
        added: &'a Added<'a>,
        reclaim: Option<Reclaim>,
        timeout: Duration,
        key: Option<u64>,
        served: &'a mut Served,
        route: &'a retry::RouteRetry,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, GatewayError>> + 'a {
        let replay = reclaim.map_or(Replay::Empty, Replay::Reclaim);
        let deadline = Deadline::now() + timeout;
        self.attempts(req, added, replay, deadline, key, served, route)
    }

    /// Sends a request the gateway built itself (a BFF part call): the body is in memory, so a
    /// refused connection can always be retried on the next endpoint.
    pub async fn call(
        &self,
        method: &Method,
        path: PathAndQuery,
        headers: HeaderMap,
        body: Bytes,
        until: Deadline,
        key: Option<u64>,
    ) -> Result<Response<UpstreamBody>, GatewayError> {
        let first = if body.is_empty() {
            RequestBody::empty()
        } else {
            RequestBody::full(body.clone())
        };
        let mut req = Request::new(first);
        *req.method_mut() = method.clone();
        *req.uri_mut() = path.into();
        *req.headers_mut() = headers;
        let mut served = Served::default();
        let none = &retry::RouteRetry::NONE;
        self.attempts(
            req,
            &NONE,
            Replay::Bytes(body),
            until,
            key,
            &mut served,
            none,
        )
        .await
    }

    /// Sends a mirror copy (body in memory, see `route::mirror`): like [`Upstream::call`], but
    /// the Host it names an endpoint by gets the `-shadow` suffix so backends can tell.
    pub async fn call_shadow(
        &self,
        method: &Method,
        path: PathAndQuery,
        headers: HeaderMap,
        body: Bytes,
        until: Deadline,
    ) -> Result<Response<UpstreamBody>, GatewayError> {
        let first = if body.is_empty() {
            RequestBody::empty()
        } else {
            RequestBody::full(body.clone())
        };
        let mut req = Request::new(first);
        *req.method_mut() = method.clone();
        *req.uri_mut() = path.into();
        *req.headers_mut() = headers;
        req.extensions_mut().insert(Shadow);
        let mut served = Served::default();
        let mut tried = Tried::default();
        self.send(
            req,
            &NONE,
            &Replay::Bytes(body),
            until,
            None,
            &mut served,
            &mut tried,
        )
        .await
    }

    /// Sends to a chosen endpoint and waits for the response head until `deadline`. A refused
    /// connection skips that endpoint for `fail_timeout` and, when the body can be sent again,
    /// tries another endpoint not tried yet (`tried`: endpoints this request already used).
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        mut req: Request<RequestBody>,
        added: &Added<'_>,
        replay: &Replay,
        deadline: Deadline,
        key: Option<u64>,
        served: &mut Served,
        tried: &mut Tried,
    ) -> Result<Response<UpstreamBody>, GatewayError> {
        // When the first attempt started (for a timeout error): that attempt's own clock
        // reading, not one more.
        let mut first_attempt: Option<Deadline> = None;
        // The gateway set it on every request it sends; logged with a refused connection.
        // (By its `HeaderName`: a `&str` key is parsed and hashed the slow way on every call.)
        // A request the gateway built itself carries it in its map (which the send takes).
        let map_id = match added.request_id {
            Some(_) => None,
            None => req.headers().get(&X_REQUEST_ID).cloned(),
        };
        let set = self.endpoints();
        if set.endpoints.is_empty() {
            return Err(GatewayError::NoEndpoints {
                upstream: self.name.clone(),
            });
        }
        let n = set.endpoints.len();
        // Without a Host to send (the route's `preserve_host`, or one a request the gateway
        // built carries), each attempt names its endpoint.
        let set_host = added.replace_host || !req.headers().contains_key(HOST);
        let shadow = req.extensions().get::<Shadow>().is_some();
        // A hedged call's first leg tells the hedge which endpoint it chose.
        let picked = req.extensions_mut().remove::<retry::hedge::Picked>();
        // Keep what a retry needs only when a retry is possible.
        let head = (n > 1).then(|| {
            (
                req.method().clone(),
                req.uri().clone(),
                req.headers().clone(),
            )
        });
        let mut refused: Option<String> = None;
        loop {
            let Some(pick) = self.select_in(&set, key, tried) else {
                return Err(match refused {
                    Some(reason) => GatewayError::UpstreamUnreachable {
                        upstream: self.name.clone(),
                        reason,
                    },
                    None => GatewayError::NoHealthyUpstream {
                        upstream: self.name.clone(),
                    },
                });
            };
            tried.add(pick.index);
            if let Some(p) = &picked {
                p.set(pick.index);
            }
            let ep = &set.endpoints[pick.index];
            served.attempts += 1;
            served.endpoint = Some(ep.authority.clone());
            // A shadow's Host (made per attempt) goes in the map: the common case borrows
            // the endpoint's.
            let host = match (set_host, shadow) {
                (false, _) => None,
                (true, false) => Some(&ep.host_header),
                (true, true) => {
                    req.headers_mut().insert(HOST, shadow_host(&ep.host_header));
                    None
                }
            };
            let span = spans::start(&mut req);
            let in_flight = InFlight::start(&ep.state);
            let attempt = Deadline::now();
            let started = *first_attempt.get_or_insert(attempt);
            let extra = Extra { host, added };
            let sending = std::pin::pin!(self.transport.send(ep, req, extra));
            let sent = deadline::within(deadline, sending).await;
            drop(in_flight);
            if let Some(span) = span {
                spans::finish(span, &self.name, ep, tried.len() - 1, &sent);
            }
            let err = match sent {
                Ok(Ok(resp)) => {
                    self.latency.observe(attempt.elapsed().as_secs_f64());
                    self.report(&set, pick.index, Outcome::Status(resp.status()));
                    return Ok(resp);
                }
                Ok(Err(e)) => e,
                Err(_) => {
                    self.report(&set, pick.index, Outcome::Timeout);
                    return Err(GatewayError::UpstreamTimeout {
                        upstream: self.name.clone(),
                        timeout: deadline.saturating_duration_since(started),
                    });
                }
            };
            if err.overloaded {
                self.resilience.overloaded();
                return Err(GatewayError::Overloaded {
                    upstream: self.name.clone(),
                });
            }
            if let Some(limit) = err.body_too_large {
                // The client's body, not the endpoint, is at fault.
                return Err(GatewayError::PayloadTooLarge { limit });
            }
            if err.client_body {
                return Err(GatewayError::ClientBody { reason: err.detail });
            }
            if !err.connect {
                self.report(&set, pick.index, Outcome::Reset);
                return Err(GatewayError::UpstreamProtocol {
                    upstream: self.name.clone(),
                    reason: err.detail,
                });
            }
            self.report(&set, pick.index, Outcome::ConnectFailed);
            let request_id = added.request_id.or(map_id.as_ref());
            let request_id = request_id.and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::warn!(request_id, upstream = %self.name, endpoint = %ep.authority, error = %err.detail, "connect failed");
            let body = if tried.len() < n { replay.body() } else { None };
            let (Some(body), Some((method, uri, headers))) = (body, head.as_ref()) else {
                return Err(GatewayError::UpstreamUnreachable {
                    upstream: self.name.clone(),
                    reason: err.detail,
                });
            };
            refused = Some(err.detail);
            req = Request::new(body);
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = headers.clone();
        }
    }
}

#[cfg(test)]
mod tests;
