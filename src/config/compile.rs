//! Validation and compilation of the parsed file types into the runtime types.
//! Every check records its error and carries on, so one pass reports every problem.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue, Method};
use toml::Spanned;

use super::diag::{ConfigErrors, Diagnostics, SourceFile};
use super::file::{
    GatewayFile, HeaderOpsFile, MatchFile, RouteFile, ServerFile, Text, UpstreamFile,
};
use super::runtime::{Limits, Runtime, ServerSettings};
use super::units::{parse_duration, parse_size};
use crate::filter::headers::HeaderOps;
use crate::net::Cidr;
use crate::route::{HostPattern, PathPattern, ProxyAction, Route, RouteTable};
use crate::upstream::{Upstream, UpstreamSettings};

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// Compiles a parsed gateway.toml; `previous` lends state to unchanged parts.
pub fn compile(
    file: GatewayFile,
    source: &SourceFile,
    profiles: &crate::bff::Sources,
    previous: Option<&Runtime>,
) -> Result<Runtime, ConfigErrors> {
    let mut errors = Vec::new();
    let mut d = Diagnostics {
        source,
        errors: &mut errors,
    };
    // One registry per process: parts that register metric families get it from here.
    let metrics = previous.map_or_else(Default::default, |p| p.metrics.clone());

    let server = server_settings(&mut d, &file.server);
    let limits = limits(&mut d, &file);
    let upstreams = upstreams(&mut d, &file.upstreams, previous, &metrics);
    let declared: Vec<&str> = file
        .upstreams
        .keys()
        .map(|k| k.get_ref().as_str())
        .collect();
    let auth = crate::filter::auth::compile_providers(
        &mut d,
        &file.auth,
        previous.map(|p| &p.auth),
        &metrics,
    );
    let rate_limits = crate::filter::rate_limit::compile_policies(
        &mut d,
        &file.rate_limits,
        previous.map(|p| &p.rate_limits),
        &metrics,
    );
    let guard_ctx = crate::filter::GuardContext {
        providers: &auth.providers,
        policies: &rate_limits,
    };
    let routes = routes(&mut d, &file.routes, &upstreams, &declared, guard_ctx);
    let tls = crate::server::tls::compile::compile(&mut d, file.server.tls.as_ref(), previous);
    crate::filter::client_cert::check_routes(&mut d, &file.routes, file.server.tls.as_ref());
    if let Some(s) = &server {
        let tls_listen = tls.as_ref().map(|t| t.listen);
        super::lifecycle::check_restart_only(&mut d, &file, s, &limits, tls_listen, previous);
    }
    let bff_context = crate::bff::compile::Context {
        upstreams: &upstreams,
        declared: &declared,
        metrics: &metrics,
        guards: guard_ctx,
    };
    let bff = crate::bff::compile::compile(&mut errors, source, &file.bff, profiles, &bff_context);

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let mut sources = vec![source.path.clone()];
    sources.extend(crate::bff::compile::source_paths(profiles).map(|p| p.to_path_buf()));
    let tls_digest =
        crate::server::tls::compile::add_sources(&mut sources, tls.as_ref(), &upstreams);
    // Key files count toward the version like the config text: a rotated key is a new config.
    let mut key_texts = Vec::new();
    for path in &auth.files {
        if !sources.contains(path) {
            sources.push(path.clone());
            key_texts.push(std::fs::read(path).unwrap_or_default());
        }
    }
    let mut routes = routes;
    for r in &mut routes {
        r.metrics = metrics.route(&r.id, Some(&r.proxy.upstream.name));
    }
    let mut inventory = super::inventory::Inventory::of_gateway(&source.text);
    for p in bff.profiles.iter() {
        inventory.insert("profiles", p.name.clone(), p.fingerprint);
    }
    let profile_texts = profiles.files.iter().map(|(s, _)| s.text.as_bytes());
    Ok(Runtime {
        version: super::version_hash(
            [source.text.as_bytes(), &tls_digest]
                .into_iter()
                .chain(profile_texts)
                .chain(key_texts.iter().map(Vec::as_slice)),
        ),
        loaded_at: SystemTime::now(),
        sources,
        server: server.expect("no errors means settings compiled"),
        limits,
        access_log: file.log.access_log.unwrap_or(true),
        routes: RouteTable::new(routes),
        upstreams,
        tls,
        auth,
        rate_limits,
        metrics,
        inventory,
        bff,
    })
}

fn duration_or(
    d: &mut Diagnostics,
    value: &Option<Text>,
    key: &str,
    default: Duration,
) -> Duration {
    value
        .as_ref()
        .and_then(|v| d.parse(v, key, parse_duration))
        .unwrap_or(default)
}

fn count_or(
    d: &mut Diagnostics,
    value: &Option<Spanned<i64>>,
    key: &str,
    range: (i64, i64),
    default: usize,
) -> usize {
    match value {
        None => default,
        Some(v) if (range.0..=range.1).contains(v.get_ref()) => *v.get_ref() as usize,
        Some(v) => {
            d.error(
                v.span(),
                key,
                format!(
                    "must be between {} and {}, got {}",
                    range.0,
                    range.1,
                    v.get_ref()
                ),
            );
            default
        }
    }
}

fn addr(d: &mut Diagnostics, value: &Text, key: &str) -> Option<SocketAddr> {
    d.parse(value, key, |s| {
        s.parse::<SocketAddr>().map_err(|_| {
            format!("bad address \"{s}\": expected IP:PORT such as \"127.0.0.1:8080\"")
        })
    })
}

fn server_settings(d: &mut Diagnostics, s: &ServerFile) -> Option<ServerSettings> {
    let listen = match &s.listen {
        Some(v) => addr(d, v, "server.listen"),
        None => Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
    };
    let admin_listen = match &s.admin_listen {
        Some(v) if v.get_ref().is_empty() => None,
        Some(v) => addr(d, v, "server.admin_listen"),
        None => Some(super::lifecycle::default_admin(listen)),
    };
    let workers = s
        .workers
        .as_ref()
        .map(|_| count_or(d, &s.workers, "server.workers", (1, 1024), 1));
    let trusted_proxies = s
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, t)| d.parse(t, format!("server.trusted_proxies[{i}]"), Cidr::parse))
        .collect();
    let shutdown_grace = duration_or(
        d,
        &s.shutdown_grace,
        "server.shutdown_grace",
        Duration::from_secs(30),
    );
    Some(ServerSettings {
        listen: listen?,
        admin_listen,
        workers,
        trusted_proxies,
        shutdown_grace,
        admin_token: super::lifecycle::admin_token(d, &s.admin_token_env),
        watch: super::lifecycle::watch(d, s),
    })
}

fn limits(d: &mut Diagnostics, file: &GatewayFile) -> Limits {
    let l = &file.limits;
    let def = Limits::default();
    let size = |d: &mut Diagnostics, v: &Option<Text>, key: &str, default: u64| {
        v.as_ref()
            .and_then(|v| d.parse(v, key, parse_size))
            .unwrap_or(default)
    };
    let max_header_bytes = size(
        d,
        &l.max_header_bytes,
        "limits.max_header_bytes",
        def.max_header_bytes as u64,
    );
    if let Some(v) = &l.max_header_bytes {
        if max_header_bytes < 8192 {
            d.error(
                v.span(),
                "limits.max_header_bytes",
                "must be at least 8KiB (hyper's smallest read buffer)",
            );
        }
    }
    Limits {
        header_read_timeout: duration_or(
            d,
            &l.header_read_timeout,
            "limits.header_read_timeout",
            def.header_read_timeout,
        ),
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
        max_headers: count_or(
            d,
            &l.max_headers,
            "limits.max_headers",
            (1, 10_000),
            def.max_headers,
        ),
        max_body_bytes: size(
            d,
            &l.max_body_bytes,
            "limits.max_body_bytes",
            def.max_body_bytes,
        ),
        idle_timeout: duration_or(d, &l.idle_timeout, "limits.idle_timeout", def.idle_timeout),
        max_connections: count_or(
            d,
            &l.max_connections,
            "limits.max_connections",
            (1, 10_000_000),
            def.max_connections,
        ),
    }
}

fn upstreams(
    d: &mut Diagnostics,
    files: &BTreeMap<Spanned<String>, UpstreamFile>,
    previous: Option<&Runtime>,
    metrics: &crate::metrics::Metrics,
) -> BTreeMap<Arc<str>, Arc<Upstream>> {
    let mut out = BTreeMap::new();
    for (name, u) in files {
        let key = format!("upstreams.{}", name.get_ref());
        let before = d.errors.len();
        let policy = crate::upstream::compile_policy::compile(d, u, &key);
        let mut endpoints = policy.endpoints;
        let tls = crate::upstream::tls::compile(d, u, &key, &mut endpoints);
        let settings = UpstreamSettings {
            tls,
            endpoints,
            balance: policy.balance,
            health: policy.health,
            outlier: policy.outlier,
            timeout: duration_or(
                d,
                &u.timeout,
                &format!("{key}.timeout"),
                Duration::from_secs(30),
            ),
            connect_timeout: duration_or(
                d,
                &u.connect_timeout,
                &format!("{key}.connect_timeout"),
                Duration::from_secs(2),
            ),
            fail_timeout: duration_or(
                d,
                &u.fail_timeout,
                &format!("{key}.fail_timeout"),
                Duration::from_secs(10),
            ),
            max_idle_per_endpoint: count_or(
                d,
                &u.max_idle_per_endpoint,
                &format!("{key}.max_idle_per_endpoint"),
                (0, 100_000),
                256,
            ),
            pool_idle_timeout: duration_or(
                d,
                &u.pool_idle_timeout,
                &format!("{key}.pool_idle_timeout"),
                Duration::from_secs(90),
            ),
        };
        if d.errors.len() > before {
            continue;
        }
        let name: Arc<str> = Arc::from(name.get_ref().as_str());
        let running = previous.and_then(|p| p.upstreams.get(&name));
        let kept = running.filter(|p| p.settings == settings).cloned();
        let upstream = kept.unwrap_or_else(|| {
            let prev = running.map(|p| &**p);
            Arc::new(Upstream::build(name.clone(), settings, prev, Some(metrics)))
        });
        out.insert(name, upstream);
    }
    out
}

fn routes(
    d: &mut Diagnostics,
    files: &[RouteFile],
    upstreams: &BTreeMap<Arc<str>, Arc<Upstream>>,
    declared: &[&str],
    guard_ctx: crate::filter::GuardContext<'_>,
) -> Vec<Route> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, r) in files.iter().enumerate() {
        let key = format!("routes[{i}]");
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
        let before = d.errors.len();
        let (host, path, methods, headers) = matcher(d, &r.matcher, &key);
        let upstream = upstreams.get(r.upstream.get_ref().as_str()).cloned();
        // An upstream that exists but has errors of its own was reported already.
        if upstream.is_none() && !declared.contains(&r.upstream.get_ref().as_str()) {
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
        let request_headers = header_ops(d, &r.request_headers, &format!("{key}.request_headers"));
        let response_headers =
            header_ops(d, &r.response_headers, &format!("{key}.response_headers"));
        let mut guards = crate::filter::compile_guards(
            d,
            &key,
            r.auth.as_ref(),
            r.rate_limit.as_ref(),
            id,
            guard_ctx,
        );
        guards.client_cert = crate::filter::client_cert::rule(d, &r.client_cert, &key);
        if d.errors.len() > before {
            continue;
        }
        let (Some(upstream), Some(path)) = (upstream, path) else {
            continue;
        };
        out.push(Route {
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
        });
    }
    out
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
        let mut list = Vec::new();
        for (i, meth) in m.methods.iter().enumerate() {
            let upper = meth.get_ref().to_ascii_uppercase();
            if METHODS.contains(&upper.as_str()) {
                list.push(Method::from_bytes(upper.as_bytes()).expect("standard method"));
            } else {
                d.error(
                    meth.span(),
                    format!("{key}.methods[{i}]"),
                    format!(
                        "unknown method \"{}\" (use one of {})",
                        meth.get_ref(),
                        METHODS.join(", ")
                    ),
                );
            }
        }
        Some(list.into_boxed_slice())
    };
    let mut headers = Vec::new();
    for (name, value) in &m.headers {
        if let Some(pair) = header_pair(d, name, value, &format!("{key}.headers")) {
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

fn header_pair(
    d: &mut Diagnostics,
    name: &Spanned<String>,
    value: &Text,
    key: &str,
) -> Option<(HeaderName, HeaderValue)> {
    let n = HeaderName::from_bytes(name.get_ref().as_bytes());
    let v = HeaderValue::from_str(value.get_ref());
    match (n, v) {
        (Ok(n), Ok(v)) => Some((n, v)),
        (Err(_), _) => {
            d.error(
                name.span(),
                format!("{key}.{}", name.get_ref()),
                format!("bad header name \"{}\"", name.get_ref()),
            );
            None
        }
        (_, Err(_)) => {
            d.error(
                value.span(),
                format!("{key}.{}", name.get_ref()),
                "bad header value (control characters are not allowed)",
            );
            None
        }
    }
}

fn header_ops(d: &mut Diagnostics, ops: &HeaderOpsFile, key: &str) -> HeaderOps {
    let mut out = HeaderOps::default();
    for (n, v) in &ops.add {
        out.add.extend(header_pair(d, n, v, &format!("{key}.add")));
    }
    for (n, v) in &ops.set {
        out.set.extend(header_pair(d, n, v, &format!("{key}.set")));
    }
    for (i, n) in ops.remove.iter().enumerate() {
        match HeaderName::from_bytes(n.get_ref().as_bytes()) {
            Ok(h) => out.remove.push(h),
            Err(_) => d.error(
                n.span(),
                format!("{key}.remove[{i}]"),
                format!("bad header name \"{}\"", n.get_ref()),
            ),
        }
    }
    out
}
