//! `[[routes]]` -> `Route`: the match (host, path, methods, headers), the proxy action and the
//! route's guards; the traffic keys (cookie/query/claim conditions, `split`, `mirror`, `fault`)
//! each have their own compile file beside their runtime type. Routes keep file order; the table is built from them in `RouteTable::new`.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use toml::Spanned;

use super::{Action, HostPattern, PathPattern, ProxyAction, Route};
use crate::config::Diagnostics;
use crate::config::file::{MatchFile, RouteFile, Text};
use crate::config::units::parse_duration;
use crate::filter::GuardContext;
use crate::filter::headers::compile::{compile_header_ops, compile_header_pair};
use crate::metrics::Metrics;
use crate::upstream::Upstream;
use crate::upstream::compile::Upstreams;

/// What a route's compile step reads besides its own table.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// Compiled upstreams.
    pub upstreams: &'a Upstreams,
    /// Every upstream name in the file, compiled or not (an upstream with errors of its own is
    /// not reported again at each route that names it).
    pub declared: &'a [&'a str],
    /// Auth providers and rate-limit policies routes may name.
    pub guards: GuardContext<'a>,
    /// The gateway's metrics registry (split, mirror and fault counters).
    pub metrics: &'a Metrics,
    /// The scripts `scripts = [...]` may name.
    pub scripts: crate::script::compile::Context<'a>,
    /// `[cluster]`, for state shared between instances (`read_your_writes.shared`).
    pub cluster: Option<&'a std::sync::Arc<crate::cluster::Cluster>>,
}

/// Compiles `[[routes]]` in file order; a route with errors is left out (and reported).
pub fn compile(d: &mut Diagnostics, files: &[RouteFile], cx: Context<'_>) -> Vec<Route> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, r) in files.iter().enumerate() {
        let key = format!("routes[{i}]");
        check_id(d, r, &key, &mut seen);
        out.extend(route(d, r, &key, cx));
    }
    out
}

/// Ids are how metrics, logs and the admin API name routes: non-empty and unique.
fn check_id<'f>(
    d: &mut Diagnostics,
    r: &'f RouteFile,
    key: &str,
    seen: &mut HashMap<&'f str, usize>,
) {
    let id = r.id.get_ref();
    if id.is_empty() {
        d.error(
            r.id.span(),
            format!("{key}.id"),
            "route id must not be empty",
        );
    } else if let Some(first) = seen.insert(id, r.id.span().start) {
        let (line, _) = d.source.line_col(first);
        d.error(
            r.id.span(),
            format!("{key}.id"),
            format!("duplicate route id `{id}` (first defined on line {line})"),
        );
    }
}

fn route(d: &mut Diagnostics, r: &RouteFile, key: &str, cx: Context<'_>) -> Option<Route> {
    let id = r.id.get_ref();
    let before = d.errors.len();
    let (host, path, methods, headers) = matcher(d, &r.matcher, key);
    let refs = crate::filter::GuardRefs {
        auth: r.auth.as_ref(),
        rate_limit: r.rate_limit.as_ref(),
        ip_list: r.ip_list.as_ref(),
        cors: r.cors.as_ref(),
    };
    let mut guards = crate::filter::compile_guards(d, key, refs, id, cx.guards);
    guards.client_cert = crate::filter::client_cert::rule(d, &r.client_cert, key);
    let place = crate::script::compile::Place::Route;
    let scripts = crate::script::compile::chain(d, r.scripts.as_ref(), key, cx.scripts, place);
    let response_headers =
        compile_header_ops(d, &r.response_headers, &format!("{key}.response_headers"));
    let answers = r.redirect.is_some() || r.respond.is_some();
    let (action, traffic) = if answers {
        only_forwarding_keys_absent(d, r, key);
        let prefix_len = match &path {
            Some(PathPattern::Prefix(p)) => Some(p.len()),
            _ => None,
        };
        let answer = super::answer::compile::compile(d, r, key, prefix_len, response_headers);
        (
            answer.map(|a| Action::Answer(Box::new(a))),
            Traffic::default(),
        )
    } else {
        let traffic = traffic(d, key, r, cx);
        let proxy = proxy_action(d, r, key, &traffic, response_headers, cx);
        (proxy.map(Action::Proxy), traffic)
    };
    if d.errors.len() > before {
        return None;
    }
    Some(Route {
        id: Arc::from(id.as_str()),
        host,
        path: path?,
        methods,
        headers,
        conditions: traffic.conditions,
        split: traffic.split,
        mirror: traffic.mirror,
        fault: traffic.fault,
        cqrs: traffic.cqrs,
        guards,
        metrics: Default::default(),
        scripts,
        compress: r.compress.as_ref().is_none_or(|c| *c.get_ref()),
        action: action?,
    })
}

/// The forwarding half of a route: its upstream (or split), path rewrites, timeout, headers.
fn proxy_action(
    d: &mut Diagnostics,
    r: &RouteFile,
    key: &str,
    traffic: &Traffic,
    response_headers: crate::filter::headers::HeaderOps,
    cx: Context<'_>,
) -> Option<ProxyAction> {
    let id = r.id.get_ref();
    let upstream = match (&r.upstream, &traffic.split) {
        (Some(u), _) => upstream_ref(d, u, &format!("{key}.upstream"), id, cx),
        (None, Some(split)) => Some(split.main().clone()),
        (None, None) => {
            if r.split.is_none() {
                d.error(
                    r.id.span(),
                    key,
                    "needs `upstream`, `split`, `redirect` or `respond`",
                );
            }
            None
        }
    };
    let strip_prefix = path_option(d, &r.strip_prefix, &format!("{key}.strip_prefix"));
    let rewrite_prefix = path_option(d, &r.rewrite_prefix, &format!("{key}.rewrite_prefix"));
    let timeout = r
        .timeout
        .as_ref()
        .and_then(|t| d.parse(t, format!("{key}.timeout"), parse_duration));
    let request_headers =
        compile_header_ops(d, &r.request_headers, &format!("{key}.request_headers"));
    let upgrades = super::upgrades::compile(d, r.upgrades.as_ref(), key);
    let max_tunnels = r.max_tunnels.as_ref().map(|_| {
        d.count_or(
            &r.max_tunnels,
            &format!("{key}.max_tunnels"),
            (0, 10_000_000),
            0,
        )
    });
    let upstream = upstream?;
    let timeout = timeout.unwrap_or(upstream.settings.timeout);
    let retry = crate::upstream::retry::route::compile(
        d,
        r.retry.as_ref().map(|t| t.get_ref()),
        r.retry_non_idempotent,
        &format!("{key}.retry"),
        timeout,
    );
    Some(ProxyAction {
        timeout,
        retry,
        upstream,
        strip_prefix,
        rewrite_prefix,
        preserve_host: r.preserve_host.unwrap_or(false),
        request_headers,
        response_headers,
        upgrades,
        tunnels: crate::tunnel::TunnelGate::new(max_tunnels),
    })
}

/// A route the gateway answers itself forwards nothing: every forwarding key is a mistake.
fn only_forwarding_keys_absent(d: &mut Diagnostics, r: &RouteFile, key: &str) {
    let action = if r.redirect.is_some() {
        "redirect"
    } else {
        "respond"
    };
    let span = |t: &Option<crate::config::file::Text>| t.as_ref().map(|t| t.span());
    let present = [
        ("upstream", span(&r.upstream)),
        ("split", r.split.as_ref().map(|s| s.span())),
        ("mirror", r.mirror.as_ref().map(|s| s.span())),
        ("fault", r.fault.as_ref().map(|s| s.span())),
        ("strip_prefix", span(&r.strip_prefix)),
        ("rewrite_prefix", span(&r.rewrite_prefix)),
        ("timeout", span(&r.timeout)),
        ("retry", r.retry.as_ref().map(|s| s.span())),
        ("sticky", span(&r.sticky)),
        ("upgrades", r.upgrades.as_ref().map(|s| s.span())),
        ("write_upstream", span(&r.write_upstream)),
        (
            "read_your_writes",
            r.read_your_writes.as_ref().map(|s| s.span()),
        ),
        ("max_tunnels", r.max_tunnels.as_ref().map(|s| s.span())),
    ];
    for (name, at) in present {
        if let Some(at) = at {
            d.error(
                at,
                format!("{key}.{name}"),
                format!("`{name}` has no effect on a route that answers with `{action}`"),
            );
        }
    }
    let edits = &r.request_headers;
    if !edits.add.is_empty() || !edits.set.is_empty() || !edits.remove.is_empty() {
        d.error(
            r.id.span(),
            format!("{key}.request_headers"),
            format!("`request_headers` has no effect on a route that answers with `{action}`"),
        );
    }
}

/// Resolves an upstream a route names (`upstream`, a split side, a mirror); an unknown name is
/// an error at the reference.
pub fn upstream_ref(
    d: &mut Diagnostics,
    name: &Text,
    key: &str,
    route: &str,
    cx: Context<'_>,
) -> Option<Arc<Upstream>> {
    let found = cx.upstreams.get(name.get_ref().as_str()).cloned();
    // An upstream that exists but has errors of its own was reported already.
    if found.is_none() && !cx.declared.contains(&name.get_ref().as_str()) {
        d.error(
            name.span(),
            key,
            format!(
                "unknown upstream `{}` in route `{route}`{}",
                name.get_ref(),
                crate::config::shape::suggestion(name.get_ref(), cx.declared.iter().copied())
            ),
        );
    }
    found
}

/// A route's match conditions and traffic actions beside the classic ones, compiled.
#[derive(Debug, Default)]
struct Traffic {
    /// `match.cookies`, `match.query`, `match.claims`.
    pub conditions: Option<Box<super::conditions::Conditions>>,
    /// `split` + `sticky`.
    pub split: Option<Box<super::split::Split>>,
    /// `mirror`.
    pub mirror: Option<Box<super::mirror::Mirror>>,
    /// `fault`.
    pub fault: Option<Box<super::fault::Fault>>,
    /// `write_upstream` + `read_your_writes`.
    pub cqrs: Option<Box<super::cqrs::Cqrs>>,
}

/// Compiles route `r`'s conditions, split, mirror and fault (`key`: e.g. `routes[2]`).
fn traffic(d: &mut Diagnostics, key: &str, r: &RouteFile, cx: Context<'_>) -> Traffic {
    let id = r.id.get_ref();
    let conditions = super::conditions::compile::compile(
        d,
        &format!("{key}.match"),
        r.matcher.get_ref(),
        r.auth.is_some(),
    );
    Traffic {
        conditions,
        split: super::split::compile::compile(d, key, r, cx).map(Box::new),
        mirror: r
            .mirror
            .as_ref()
            .and_then(|m| super::mirror::compile::compile(d, key, id, m, cx)),
        fault: r
            .fault
            .as_ref()
            .and_then(|f| super::fault::compile::compile(d, key, id, f, cx.metrics)),
        cqrs: super::cqrs::compile::compile(d, key, r, cx).map(Box::new),
    }
}

type Matcher = (
    HostPattern,
    Option<PathPattern>,
    Option<Box<[Method]>>,
    Box<[(HeaderName, HeaderValue)]>,
);

fn matcher(d: &mut Diagnostics, m: &Spanned<MatchFile>, key: &str) -> Matcher {
    let span = m.span();
    let m = m.get_ref();
    let key = format!("{key}.match");
    let path = match (&m.path, &m.path_prefix) {
        (Some(_), Some(p)) => {
            d.error(
                p.span(),
                format!("{key}.path_prefix"),
                "give `path` or `path_prefix`, not both",
            );
            None
        }
        (None, None) => {
            d.error(span, key.clone(), "needs `path` (exact) or `path_prefix`");
            None
        }
        (Some(p), None) => {
            path_value(d, p, &format!("{key}.path")).map(|p| PathPattern::Exact(p.into()))
        }
        (None, Some(p)) => path_value(d, p, &format!("{key}.path_prefix")).map(|p| {
            let trimmed = p.trim_end_matches('/');
            PathPattern::Prefix(if trimmed.is_empty() {
                "/".into()
            } else {
                trimmed.into()
            })
        }),
    };
    let host = match &m.host {
        None => HostPattern::Any,
        Some(h) => {
            let text = h.get_ref().trim_end_matches('.').to_ascii_lowercase();
            let (wild, name) = match text.strip_prefix("*.") {
                Some(rest) => (true, rest.to_string()),
                None => (false, text.clone()),
            };
            let valid = !name.is_empty()
                && name.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                d.error(h.span(), format!("{key}.host"), format!("bad host \"{}\": expected a name such as \"api.example.com\" or \"*.example.com\"", h.get_ref()));
            }
            if wild {
                HostPattern::Wildcard(name.into())
            } else {
                HostPattern::Exact(name.into())
            }
        }
    };
    let methods = if m.methods.is_empty() {
        None
    } else {
        let mut list: Vec<Method> = (m.methods.iter().enumerate())
            .filter_map(|(i, meth)| d.method(meth, format!("{key}.methods[{i}]")))
            .collect();
        // HEAD is served wherever GET is (RFC 9110 §9.3.2), and `Allow` then lists it.
        if list.contains(&Method::GET) && !list.contains(&Method::HEAD) {
            list.push(Method::HEAD);
        }
        Some(list.into_boxed_slice())
    };
    let mut headers = Vec::new();
    for (name, value) in &m.headers {
        if let Some(pair) = compile_header_pair(d, name, value, &format!("{key}.headers")) {
            headers.push(pair);
        }
    }
    (host, path, methods, headers.into_boxed_slice())
}

fn path_value(d: &mut Diagnostics, p: &Text, key: &str) -> Option<String> {
    let v = p.get_ref();
    if !v.starts_with('/') || v.contains(['?', '#', ' ']) {
        d.error(
            p.span(),
            key,
            format!("bad path \"{v}\": must start with '/' and hold no query, fragment or spaces"),
        );
        return None;
    }
    Some(v.clone())
}

fn path_option(d: &mut Diagnostics, p: &Option<Text>, key: &str) -> Option<Box<str>> {
    let v = path_value(d, p.as_ref()?, key)?;
    let t = v.trim_end_matches('/');
    Some(if t.is_empty() { "/".into() } else { t.into() })
}
