//! Route table and pure route matching over immutable data.
//!
//! Precedence: host first (exact host, then the longest matching `*.suffix`, then routes without a
//! host), then path (an exact `path` beats any prefix; a longer prefix beats a shorter one), and
//! among routes with the same host and path, file order. A route also needs its methods and
//! header conditions to hold; when some route takes the path but none takes the method the
//! answer is 405 with `Allow`. Lookup walks the path's segments through a trie, so its cost
//! depends on the path's depth, not on the number of routes.

pub mod compile;

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
    /// Filters run before the action (auth, rate limits).
    pub guards: Guards,
    /// Where and how the request is forwarded.
    pub proxy: ProxyAction,
    /// This route's metric series, resolved when the config is compiled.
    pub metrics: crate::metrics::RouteMetrics,
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
}

impl Route {
    fn takes_headers(&self, headers: &HeaderMap) -> bool {
        self.headers
            .iter()
            .all(|(name, want)| headers.get_all(name).iter().any(|v| v == want))
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
            table.routes.push(Arc::new(route));
        }
        table
    }

    /// Routes in file order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// Finds the route for a request. `host` is lowercase without port.
    pub fn find(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<&Arc<Route>, GatewayError> {
        let mut wrong_method = false;
        let mut consider = |index: &PathIndex| -> Option<&Arc<Route>> {
            match self.lookup(index, method, path, headers) {
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
                allow: self.allow(host, path, headers),
            })
        } else {
            Err(GatewayError::NoRoute)
        }
    }

    /// `Ok(route index)`, or `Err(path matched but method did not)`.
    fn lookup(
        &self,
        index: &PathIndex,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<u32, bool> {
        let mut wrong_method = false;
        let mut pick = |candidates: &[u32]| -> Option<u32> {
            for &i in candidates {
                let r = &self.routes[i as usize];
                if r.takes_headers(headers) {
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
    fn allow(&self, host: Option<&str>, path: &str, headers: &HeaderMap) -> HeaderValue {
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
            if host_ok && path_ok && r.takes_headers(headers) {
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
    let mut out = String::from("ID\tHOST\tPATH\tMETHODS\tUPSTREAM\tREWRITE\n");
    for r in table.routes() {
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
        let rewrite = format!(
            "{}{}",
            r.proxy
                .strip_prefix
                .as_deref()
                .map(|s| format!("-{s}"))
                .unwrap_or_default(),
            r.proxy
                .rewrite_prefix
                .as_deref()
                .map(|s| format!(" +{s}"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "{}\t{host}\t{path}\t{methods}\t{}\t{}",
            r.id,
            r.proxy.upstream.name,
            if rewrite.is_empty() { "-" } else { &rewrite }
        );
    }
    out
}
