//! Route table and pure route matching over immutable data.
//!
//! Precedence: host first (exact host, then the longest matching `*.suffix`, then routes without a
//! host), then path (an exact `path` beats any prefix; a longer prefix beats a shorter one), and
//! among routes with the same host and path, file order. A route also needs its methods and
//! header, cookie and query conditions to hold; when some route takes the path but none takes
//! the method the answer is 405 with `Allow`. Claim conditions are checked by
//! [`conditions::find`] after verifying the route's token: a claim route whose claims do not
//! hold (or whose token is missing or invalid) is passed over like any route whose conditions
//! fail, and the lookup goes on in the same order. Lookup walks the path's segments through a
//! trie, so its cost depends on the path's depth, not on the number of routes.

pub mod answer;
pub mod chance;
pub mod compile;
pub mod conditions;
pub mod cqrs;
pub mod fault;
pub mod mirror;
pub mod shadow;
pub mod split;
pub mod traffic;
pub mod upgrades;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::error::GatewayError;
use crate::filter::Guards;
use crate::filter::headers::HeaderOps;
use crate::upstream::Upstream;

/// Which hosts a route takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Any host.
    Any,
    /// One host name (lowercase, no port).
    Exact(Box<str>),
    /// `*.example.com`: any name ending in `.example.com` (stored without `*.`).
    Wildcard(Box<str>),
}

/// Which paths a route takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// Exactly this path.
    Exact(Box<str>),
    /// This path and everything under it, by whole segments (`/` takes everything).
    Prefix(Box<str>),
}

/// A compiled route: what it matches and what it does.
#[derive(Debug)]
pub struct Route {
    /// Unique id from the config.
    pub id: Arc<str>,
    /// Host condition.
    pub host: HostPattern,
    /// Path condition.
    pub path: PathPattern,
    /// Allowed methods; `None` takes all.
    pub methods: Option<Box<[Method]>>,
    /// Header equality conditions.
    pub headers: Box<[(HeaderName, HeaderValue)]>,
    /// Cookie, query and claim conditions, if any.
    pub conditions: Option<Box<conditions::Conditions>>,
    /// Filters run before the action (auth, rate limits).
    pub guards: Guards,
    /// What the route does: forward, or answer itself.
    pub action: Action,
    /// Weighted split over upstreams; when set, the proxy action's upstream is its heaviest side.
    pub split: Option<Box<split::Split>>,
    /// Copies of requests to a shadow upstream.
    pub mirror: Option<Box<mirror::Mirror>>,
    /// Injected delays and aborts.
    pub fault: Option<Box<fault::Fault>>,
    /// CQRS: `write_upstream` (and `read_your_writes`); `None` costs nothing.
    pub cqrs: Option<Box<cqrs::Cqrs>>,
    /// This route's metric series, resolved when the config is compiled.
    pub metrics: crate::metrics::RouteMetrics,
    /// `scripts = [...]`: run after the guards; `None` costs nothing.
    pub scripts: Option<crate::script::Chain>,
    /// Whether `[compression]` may compress this route's answers (`compress = false` opts out).
    pub compress: bool,
}

/// What a matched route does.
// The proxy variant is the one nearly every request takes: kept inline (no pointer chase on
// the hot path), the rare answer boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Action {
    /// Forward to an upstream (or one side of a split).
    Proxy(ProxyAction),
    /// Answer at the gateway: `redirect` or `respond`.
    Answer(Box<answer::Answer>),
}

/// Forwarding settings of a route.
#[derive(Debug)]
pub struct ProxyAction {
    /// The upstream cluster.
    pub upstream: Arc<Upstream>,
    /// Removed from the front of the path.
    pub strip_prefix: Option<Box<str>>,
    /// Put in front of the path after stripping.
    pub rewrite_prefix: Option<Box<str>>,
    /// Time to the response head.
    pub timeout: std::time::Duration,
    /// Send the client's Host instead of the endpoint's.
    pub preserve_host: bool,
    /// Changes to the upstream request.
    pub request_headers: HeaderOps,
    /// Changes to the client response.
    pub response_headers: HeaderOps,
    /// Protocols a client may switch to through this route (`upgrades`).
    pub upgrades: upgrades::Upgrades,
    /// The cap on concurrent tunnels (`max_tunnels`).
    pub tunnels: crate::tunnel::TunnelGate,
    /// `retry = {...}` and `retry_non_idempotent`.
    pub retry: crate::upstream::retry::RouteRetry,
}

impl Route {
    /// The forwarding settings; `None` for a route the gateway answers itself.
    pub fn proxy(&self) -> Option<&ProxyAction> {
        match &self.action {
            Action::Proxy(p) => Some(p),
            Action::Answer(_) => None,
        }
    }

    /// The upstream a proxy route forwards to by default (a split's heaviest side).
    pub fn upstream(&self) -> Option<&Arc<Upstream>> {
        self.proxy().map(|p| &p.upstream)
    }

    fn takes_headers(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        self.headers
            .iter()
            .all(|(name, want)| headers.get_all(name).iter().any(|v| v == want))
            && self
                .conditions
                .as_ref()
                .is_none_or(|c| c.takes(headers, query))
    }

    fn takes_method(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
    }
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    routes: Vec<u32>,
}

#[derive(Debug, Default)]
struct PathIndex {
    exact: HashMap<Box<str>, Vec<u32>>,
    prefixes: Node,
}

/// All routes, indexed for lookup by host and path.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    exact_hosts: HashMap<Box<str>, PathIndex>,
    wildcard_hosts: HashMap<Box<str>, PathIndex>,
    any_host: PathIndex,
    claim_routes: bool,
}

impl RouteTable {
    /// Builds the indexes; `routes` are in file order.
    pub fn new(routes: Vec<Route>) -> RouteTable {
        let mut table = RouteTable::default();
        for (i, route) in routes.into_iter().enumerate() {
            let i = u32::try_from(i).expect("fewer than 2^32 routes");
            let index = match &route.host {
                HostPattern::Any => &mut table.any_host,
                HostPattern::Exact(h) => table.exact_hosts.entry(h.clone()).or_default(),
                HostPattern::Wildcard(h) => table.wildcard_hosts.entry(h.clone()).or_default(),
            };
            match &route.path {
                PathPattern::Exact(p) => index.exact.entry(p.clone()).or_default().push(i),
                PathPattern::Prefix(p) => {
                    let mut node = &mut index.prefixes;
                    for seg in segments(p) {
                        node = node.children.entry(seg.into()).or_default();
                    }
                    node.routes.push(i);
                }
            }
            table.claim_routes |= route
                .conditions
                .as_ref()
                .is_some_and(|c| !c.claims.is_empty());
            table.routes.push(Arc::new(route));
        }
        table
    }

    /// Routes in file order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// Whether some route has claim conditions (then [`conditions::find`] verifies tokens).
    pub fn has_claim_routes(&self) -> bool {
        self.claim_routes
    }

    /// Finds the route for a request, not looking at claim conditions (see
    /// [`conditions::find`]). `host` is lowercase without port.
    pub fn find(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<&Arc<Route>, GatewayError> {
        self.find_skipping(host, method, path, query, headers, &[])
    }

    /// Like [`RouteTable::find`], passing over the routes in `skip`.
    pub fn find_skipping(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        skip: &[&Arc<Route>],
    ) -> Result<&Arc<Route>, GatewayError> {
        let mut wrong_method = false;
        let request = Facts {
            method,
            path,
            query,
            headers,
            skip,
        };
        let mut consider = |index: &PathIndex| -> Option<&Arc<Route>> {
            match self.lookup(index, &request) {
                Ok(i) => Some(&self.routes[i as usize]),
                Err(path_matched) => {
                    wrong_method |= path_matched;
                    None
                }
            }
        };
        if let Some(host) = host {
            if let Some(found) = self.exact_hosts.get(host).and_then(&mut consider) {
                return Ok(found);
            }
            if !self.wildcard_hosts.is_empty() {
                let mut rest = host;
                while let Some((_, parent)) = rest.split_once('.') {
                    if let Some(found) = self.wildcard_hosts.get(parent).and_then(&mut consider) {
                        return Ok(found);
                    }
                    rest = parent;
                }
            }
        }
        if let Some(found) = consider(&self.any_host) {
            return Ok(found);
        }
        if wrong_method {
            Err(GatewayError::MethodNotAllowed {
                allow: self.allow(host, path, query, headers),
            })
        } else {
            Err(GatewayError::NoRoute)
        }
    }

    /// `Ok(route index)`, or `Err(path matched but method did not)`.
    fn lookup(&self, index: &PathIndex, req: &Facts<'_>) -> Result<u32, bool> {
        let (method, path) = (req.method, req.path);
        let mut wrong_method = false;
        let mut pick = |candidates: &[u32]| -> Option<u32> {
            for &i in candidates {
                let r = &self.routes[i as usize];
                if !req.skip.is_empty() && req.skip.iter().any(|s| Arc::ptr_eq(s, r)) {
                    continue;
                }
                if r.takes_headers(req.headers, req.query) {
                    if r.takes_method(method) {
                        return Some(i);
                    }
                    wrong_method = true;
                }
            }
            None
        };
        if let Some(found) = index.exact.get(path).and_then(|c| pick(c)) {
            return Ok(found);
        }
        // Walk down the trie, remembering nodes that hold routes; deepest wins.
        let mut stack: [&Node; 16] = [&index.prefixes; 16];
        let mut depth = 0usize;
        let mut deep: Vec<&Node> = Vec::new();
        let mut node = &index.prefixes;
        if !node.routes.is_empty() {
            stack[0] = node;
            depth = 1;
        }
        for seg in segments(path) {
            match node.children.get(seg) {
                Some(child) => {
                    node = child;
                    if !node.routes.is_empty() {
                        if depth < stack.len() {
                            stack[depth] = node;
                            depth += 1;
                        } else {
                            deep.push(node);
                        }
                    }
                }
                None => break,
            }
        }
        for n in deep.iter().rev().chain(stack[..depth].iter().rev()) {
            if let Some(found) = pick(&n.routes) {
                return Ok(found);
            }
        }
        Err(wrong_method)
    }

    /// The `Allow` value: methods of every route that takes this host, path and headers.
    fn allow(
        &self,
        host: Option<&str>,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> HeaderValue {
        let mut methods: Vec<&str> = Vec::new();
        for r in &self.routes {
            let host_ok = match (&r.host, host) {
                (HostPattern::Any, _) => true,
                (HostPattern::Exact(h), Some(req)) => **h == *req,
                (HostPattern::Wildcard(s), Some(req)) => {
                    req.len() > s.len() + 1
                        && req.ends_with(&**s)
                        && req[..req.len() - s.len()].ends_with('.')
                }
                (_, None) => false,
            };
            let path_ok = match &r.path {
                PathPattern::Exact(p) => **p == *path,
                PathPattern::Prefix(p) => prefix_matches(p, path),
            };
            if host_ok && path_ok && r.takes_headers(headers, query) {
                if let Some(ms) = &r.methods {
                    methods.extend(ms.iter().map(Method::as_str));
                }
            }
        }
        methods.sort_unstable();
        methods.dedup();
        let mut out = String::new();
        for (i, m) in methods.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{m}");
        }
        HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// What a lookup reads of the request.
struct Facts<'a> {
    method: &'a Method,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    skip: &'a [&'a Arc<Route>],
}

/// Path segments after the leading `/` (empty segments kept, so `//x` stays distinct).
fn segments(path: &str) -> impl Iterator<Item = &str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    p.split('/').filter(move |_| !p.is_empty())
}

/// Whether `prefix` takes `path` by whole segments.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The compiled route table as text, one route per line, for `portico routes`.
pub fn describe(table: &RouteTable) -> String {
    let mut out = String::from(LEGEND);
    out.push_str("ID\tHOST\tPATH\tMETHODS\tUPSTREAM\tREWRITE\tAUTH\tRATE_LIMIT\tTIMEOUT\tNOTE\n");
    let shadowed = shadow::shadowed(table.routes());
    for (i, r) in table.routes().iter().enumerate() {
        let host = match &r.host {
            HostPattern::Any => "*".to_string(),
            HostPattern::Exact(h) => h.to_string(),
            HostPattern::Wildcard(h) => format!("*.{h}"),
        };
        let path = match &r.path {
            PathPattern::Exact(p) => format!("= {p}"),
            PathPattern::Prefix(p) => format!("{p}/*"),
        };
        let methods = r.methods.as_ref().map_or("*".to_string(), |m| {
            m.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
        });
        let (upstream, rewrite) = match &r.action {
            Action::Answer(a) => (answer_label(a), String::new()),
            Action::Proxy(p) => {
                let rewrite = format!(
                    "{}{}",
                    p.strip_prefix
                        .as_deref()
                        .map(|s| format!("-{s}"))
                        .unwrap_or_default(),
                    p.rewrite_prefix
                        .as_deref()
                        .map(|s| format!(" +{s}"))
                        .unwrap_or_default()
                );
                let upstream = match &r.split {
                    None => p.upstream.name.to_string(),
                    Some(split) => split
                        .sides()
                        .iter()
                        .map(|s| format!("{}:{}", s.upstream.name, s.weight))
                        .collect::<Vec<_>>()
                        .join(","),
                };
                (upstream, rewrite)
            }
        };
        let auth = r.guards.auth.as_ref().map_or("-".to_string(), |a| {
            let providers: Vec<&str> = a.providers.iter().map(|p| &*p.name).collect();
            let mut s = providers.join(",");
            if !a.scopes.is_empty() {
                s.push_str(" scopes=");
                s.push_str(&a.scopes.join(","));
            }
            s
        });
        let limits = if r.guards.rate_limits.is_empty() {
            "-".to_string()
        } else {
            let names: Vec<&str> = r.guards.rate_limits.iter().map(|p| &*p.name).collect();
            names.join(",")
        };
        let timeout = r.proxy().map_or("-".to_string(), |p| {
            crate::config::units::format_duration(p.timeout)
        });
        let note = match shadowed.iter().find(|(later, _)| *later == i) {
            Some((_, by)) => format!("never matches (after {})", table.routes()[*by].id),
            None => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "{}\t{host}\t{path}\t{methods}\t{upstream}\t{}\t{auth}\t{limits}\t{timeout}\t{note}",
            r.id,
            if rewrite.is_empty() { "-" } else { &rewrite }
        );
    }
    out
}

/// What the columns of `portico routes` mean.
const LEGEND: &str = "\
# HOST: * any host | PATH: `= /p` exact, `/p/*` the prefix and everything under it
# METHODS: * all | UPSTREAM: name, `name:weight,...` for a split, `(redirect 308)`/`(respond 200)`
# REWRITE: `-/strip` strip_prefix, `+/new` rewrite_prefix | AUTH: providers and required scopes
# RATE_LIMIT: policies, all must admit | TIMEOUT: time to the upstream's response head
# NOTE: `never matches` when an earlier route takes every request this one would
";

/// How `portico routes` shows a route the gateway answers itself.
fn answer_label(a: &answer::Answer) -> String {
    match &a.kind {
        answer::Kind::Redirect { status, .. } => format!("(redirect {})", status.as_u16()),
        answer::Kind::Respond { status, .. } => format!("(respond {})", status.as_u16()),
    }
}
