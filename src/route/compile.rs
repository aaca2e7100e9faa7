//! `[[routes]]` -> `Route`: the match (host, path, methods, headers), the proxy action and the
//! route's guards. Routes keep file order; the table is built from them in `RouteTable::new`.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use toml::Spanned;

use super::{HostPattern, PathPattern, ProxyAction, Route};
use crate::config::Diagnostics;
use crate::config::file::{MatchFile, RouteFile, Text};
use crate::config::units::parse_duration;
use crate::filter::GuardContext;
use crate::filter::headers::compile::{compile_header_ops, compile_header_pair};
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
    let upstream = cx.upstreams.get(r.upstream.get_ref().as_str()).cloned();
    // An upstream that exists but has errors of its own was reported already.
    if upstream.is_none() && !cx.declared.contains(&r.upstream.get_ref().as_str()) {
        d.error(
            r.upstream.span(),
            format!("{key}.upstream"),
            format!(
                "unknown upstream `{}` in route `{id}`",
                r.upstream.get_ref()
            ),
        );
    }
    let strip_prefix = path_option(d, &r.strip_prefix, &format!("{key}.strip_prefix"));
    let rewrite_prefix = path_option(d, &r.rewrite_prefix, &format!("{key}.rewrite_prefix"));
    let timeout = r
        .timeout
        .as_ref()
        .and_then(|t| d.parse(t, format!("{key}.timeout"), parse_duration));
    let request_headers =
        compile_header_ops(d, &r.request_headers, &format!("{key}.request_headers"));
    let response_headers =
        compile_header_ops(d, &r.response_headers, &format!("{key}.response_headers"));
    let mut guards = crate::filter::compile_guards(
        d,
        key,
        r.auth.as_ref(),
        r.rate_limit.as_ref(),
        id,
        cx.guards,
    );
    guards.client_cert = crate::filter::client_cert::rule(d, &r.client_cert, key);
    if d.errors.len() > before {
        return None;
    }
    let (upstream, path) = (upstream?, path?);
    Some(Route {
        id: Arc::from(id.as_str()),
        host,
        path,
        methods,
        headers,
        guards,
        metrics: Default::default(),
        proxy: ProxyAction {
            timeout: timeout.unwrap_or(upstream.settings.timeout),
            upstream,
            strip_prefix,
            rewrite_prefix,
            preserve_host: r.preserve_host.unwrap_or(false),
            request_headers,
            response_headers,
        },
    })
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
        let list: Vec<Method> = (m.methods.iter().enumerate())
            .filter_map(|(i, meth)| d.method(meth, format!("{key}.methods[{i}]")))
            .collect();
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
