//! One BFF part: upstream, method, path and body templates, headers, timeout, default,
//! shaping, size cap and answer cache.

use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, HeaderName};
use http::uri::PathAndQuery;

use super::endpoint::part_vars;
use super::{Context, DEFAULT_DEADLINE, OWNED_HEADERS, duration, method, size};
use crate::bff::Part;
use crate::bff::cache::PartCache;
use crate::bff::file::{CacheFile, PartFile};
use crate::bff::json_template::{JsonTemplate, toml_to_json};
use crate::bff::metrics::PartStats;
use crate::bff::shape::Shape;
use crate::bff::template::{Kind, Scope, Source, Template};
use crate::config::Diagnostics;
use crate::config::file::Text;
use crate::config::units::parse_duration;

pub(super) struct PartContext<'a> {
    pub(super) key: &'a str,
    pub(super) scope: &'a Scope<'a>,
    pub(super) max_part_bytes: usize,
    pub(super) profile: &'a Arc<str>,
    pub(super) label: &'a Arc<str>,
    /// The endpoint's deadline (the profile's unless it sets its own).
    pub(super) deadline: Duration,
}

pub(super) fn part(
    d: &mut Diagnostics,
    p: &PartFile,
    pc: &PartContext<'_>,
    cx: &Context<'_>,
) -> Option<(Part, Vec<usize>)> {
    let key = pc.key;
    let before = d.errors.len();
    let up_name = p.upstream.get_ref().as_str();
    let upstream = cx.upstreams.get(up_name).cloned();
    check_upstream(d, p, key, cx);
    let method = method(d, &p.method, &format!("{key}.method"));
    let path = path_template(d, &p.path, &format!("{key}.path"), pc.scope);
    let body = p.body.as_ref().and_then(|b| {
        JsonTemplate::compile(b.get_ref(), pc.scope)
            .map_err(|msg| d.error(b.span(), format!("{key}.body"), msg))
            .ok()
    });
    let pass_headers = pass_headers(d, p, key);
    let set_headers = set_headers(d, p, key, pc.scope);
    let timeout = duration(
        d,
        &p.timeout,
        &format!("{key}.timeout"),
        upstream
            .as_ref()
            .map_or(DEFAULT_DEADLINE, |u| u.settings.timeout),
    );
    let required = p.required.unwrap_or(false);
    let default = p.default.as_ref().and_then(|v| {
        if required {
            d.error(
                v.span(),
                format!("{key}.default"),
                "a required part cannot have a default: its failure fails the request",
            );
            return None;
        }
        toml_to_json(v.get_ref())
            .map_err(|msg| d.error(v.span(), format!("{key}.default"), msg))
            .ok()
    });
    let fallback = fallback(d, p, key, required);
    let hedge_after = hedge_after(d, p, key, &method, pc.deadline);
    let shape = shape(d, p, key);
    let max_bytes = size(
        d,
        &p.max_bytes,
        &format!("{key}.max_bytes"),
        pc.max_part_bytes,
    );
    let cache = p.cache.as_ref().map(|c| cache(d, c.get_ref(), key));
    if d.errors.len() > before {
        return None;
    }
    let (upstream, path) = (upstream?, path?);
    let flatten = p.flatten.unwrap_or(false);
    let mut shape = shape.unwrap_or_default();
    if flatten {
        // Its keys are merged into the client's answer one by one: it stays a tree.
        shape.tree_only();
    }
    let name: Arc<str> = Arc::from(p.name.get_ref().as_str());
    let stats = PartStats::new(cx.metrics, pc.profile, pc.label, &name);
    let part = Part {
        key_json: format!("{}:", serde_json::Value::String(name.to_string())).into(),
        name,
        upstream,
        method,
        path,
        body,
        pass_headers: pass_headers.into(),
        set_headers: set_headers.into(),
        timeout,
        required,
        shape,
        flatten,
        default,
        fallback,
        hedge_after,
        max_bytes,
        cache,
        stats,
    };
    let deps = part_vars(&part)
        .into_iter()
        .filter_map(|v| match v.source {
            Source::Part(j) => Some(j),
            _ => None,
        })
        .collect();
    Some((part, deps))
}

/// The part's upstream must be declared in gateway.toml (one that failed to compile was
/// reported there already).
fn check_upstream(d: &mut Diagnostics, p: &PartFile, key: &str, cx: &Context<'_>) {
    let up_name = p.upstream.get_ref().as_str();
    if !cx.declared.contains(&up_name) {
        d.error(
            p.upstream.span(),
            format!("{key}.upstream"),
            format!(
                "unknown upstream `{up_name}`{} (upstreams in gateway.toml: {})",
                crate::config::shape::suggestion(up_name, cx.declared.iter().copied()),
                if cx.declared.is_empty() {
                    "none".to_string()
                } else {
                    cx.declared.join(", ")
                }
            ),
        );
    }
}

/// The path template at `key` (a BFF part's or a saga call's); a sample rendering must be a
/// valid origin-form target.
pub(crate) fn path_template(
    d: &mut Diagnostics,
    path: &Text,
    key: &str,
    scope: &Scope<'_>,
) -> Option<Template> {
    match Template::parse(path.get_ref(), Kind::Path, scope) {
        Err(msg) => {
            d.error(path.span(), key, msg);
            None
        }
        Ok(t) => {
            let sample = t.sample();
            let valid = sample.starts_with('/')
                && !sample.contains('#')
                && PathAndQuery::try_from(sample.as_str()).is_ok();
            if !valid {
                d.error(
                    path.span(),
                    key,
                    format!("bad path \"{}\": must start with '/' and hold only URI characters (spaces and `#` must be percent-encoded)", path.get_ref()),
                );
            }
            Some(t)
        }
    }
}

/// Client headers passed on; Authorization only with `forward_auth = true`.
fn pass_headers(d: &mut Diagnostics, p: &PartFile, key: &str) -> Vec<HeaderName> {
    let forward_auth = p.forward_auth.unwrap_or(false);
    let mut pass_headers = Vec::new();
    for (i, h) in p.headers.iter().enumerate() {
        let hkey = format!("{key}.headers[{i}]");
        let Some(name) = header_name(d, h.get_ref(), h.span(), &hkey) else {
            continue;
        };
        if name == AUTHORIZATION && !forward_auth {
            d.error(
                h.span(),
                hkey,
                "set `forward_auth = true` to pass the client's Authorization header",
            );
            continue;
        }
        pass_headers.push(name);
    }
    if forward_auth && !pass_headers.contains(&AUTHORIZATION) {
        pass_headers.push(AUTHORIZATION);
    }
    pass_headers
}

/// Headers set from templates.
fn set_headers(
    d: &mut Diagnostics,
    p: &PartFile,
    key: &str,
    scope: &Scope<'_>,
) -> Vec<(HeaderName, Template)> {
    let mut set_headers = Vec::new();
    for (name, value) in &p.set_headers {
        let hkey = format!("{key}.set_headers.{}", name.get_ref());
        let Some(h) = header_name(d, name.get_ref(), name.span(), &hkey) else {
            continue;
        };
        match Template::parse(value.get_ref(), Kind::Text, scope) {
            Ok(t) => set_headers.push((h, t)),
            Err(msg) => d.error(value.span(), hkey, msg),
        }
    }
    set_headers
}

/// `cache = { ttl, stale_if_error }`.
fn cache(d: &mut Diagnostics, c: &CacheFile, key: &str) -> PartCache {
    let ttl = duration(
        d,
        &Some(c.ttl.clone()),
        &format!("{key}.cache.ttl"),
        Duration::ZERO,
    );
    let stale = c
        .stale_if_error
        .as_ref()
        .and_then(|s| d.parse(s, format!("{key}.cache.stale_if_error"), parse_duration));
    PartCache::new(ttl, stale.unwrap_or_default())
}

fn header_name(
    d: &mut Diagnostics,
    raw: &str,
    span: std::ops::Range<usize>,
    key: &str,
) -> Option<HeaderName> {
    match HeaderName::from_bytes(raw.as_bytes()) {
        Err(_) => {
            d.error(span, key, format!("bad header name \"{raw}\""));
            None
        }
        Ok(h) if OWNED_HEADERS.contains(&h.as_str()) => {
            d.error(
                span,
                key,
                format!("header `{h}` is set by the gateway and cannot be passed or set"),
            );
            None
        }
        Ok(h) => Some(h),
    }
}

fn shape(d: &mut Diagnostics, p: &PartFile, key: &str) -> Option<Shape> {
    let before = d.errors.len();
    if let Some(fields) = &p.fields {
        for (i, f) in fields.iter().enumerate() {
            if let Err(msg) = Shape::new(Some(&[f.get_ref().as_str()]), None, &[]) {
                d.error(f.span(), format!("{key}.fields[{i}]"), msg);
            }
        }
    }
    for (from, to) in &p.rename {
        if let Err(msg) = Shape::new(None, None, &[(from.get_ref(), to.get_ref())]) {
            d.error(from.span(), format!("{key}.rename.{}", from.get_ref()), msg);
        }
    }
    let max_items = match &p.max_items {
        None => None,
        Some(m) if (0..=1_000_000).contains(m.get_ref()) => Some(*m.get_ref() as usize),
        Some(m) => {
            d.error(
                m.span(),
                format!("{key}.max_items"),
                format!("must be between 0 and 1000000, got {}", m.get_ref()),
            );
            None
        }
    };
    if d.errors.len() > before {
        return None;
    }
    let fields: Option<Vec<&str>> = p
        .fields
        .as_ref()
        .map(|f| f.iter().map(|t| t.get_ref().as_str()).collect());
    let renames: Vec<(&str, &str)> = p
        .rename
        .iter()
        .map(|(a, b)| (a.get_ref().as_str(), b.get_ref().as_str()))
        .collect();
    match Shape::new(fields.as_deref(), max_items, &renames) {
        Ok(s) => Some(s),
        Err(msg) => {
            let span = p
                .fields
                .as_ref()
                .and_then(|f| f.first())
                .map_or(0..0, |f| f.span());
            d.error(span, format!("{key}.fields"), msg);
            None
        }
    }
}

/// `hedge_after`: idempotent methods only, and shorter than the deadline.
fn hedge_after(
    d: &mut Diagnostics,
    p: &PartFile,
    key: &str,
    method: &http::Method,
    deadline: Duration,
) -> Option<Duration> {
    let t = p.hedge_after.as_ref()?;
    let k = format!("{key}.hedge_after");
    let after = d.positive_duration_or(&Some(t.clone()), &k, Duration::ZERO);
    if !crate::upstream::retry::is_idempotent(method) {
        d.error(
            t.span(),
            k,
            format!("a {method} part cannot be hedged: only idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE) can be sent twice"),
        );
        return None;
    }
    if after >= deadline {
        d.error(
            t.span(),
            k,
            format!("hedge_after ({after:?}) must be shorter than the deadline ({deadline:?})"),
        );
        return None;
    }
    (!after.is_zero()).then_some(after)
}

/// `fallback = {...}`: optional parts only, and not beside `default`.
fn fallback(
    d: &mut Diagnostics,
    p: &PartFile,
    key: &str,
    required: bool,
) -> Option<serde_json::Value> {
    let v = p.fallback.as_ref()?;
    let k = format!("{key}.fallback");
    if required {
        d.error(
            v.span(),
            k,
            "a required part cannot have a fallback: its failure fails the request",
        );
        return None;
    }
    if p.default.is_some() {
        d.error(v.span(), k, "use either `default` or `fallback`, not both");
        return None;
    }
    toml_to_json(v.get_ref())
        .map_err(|msg| d.error(v.span(), k, msg))
        .ok()
}
