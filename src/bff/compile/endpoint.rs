//! One BFF endpoint: method and path, deadline, guards, its parts (each compiled by `part`)
//! and the plan that orders them.

use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::part::{PartContext, part};
use super::{Context, duration, is_token, method};
use crate::bff::file::{EndpointFile, PartFile};
use crate::bff::metrics::EndpointStats;
use crate::bff::plan::Plan;
use crate::bff::select::EndpointPath;
use crate::bff::template::{RESERVED_SOURCES, Scope, Source, Var};
use crate::bff::{Endpoint, PARTIAL_KEY, Part};
use crate::config::Diagnostics;
use crate::config::file::auth::AuthRuleFile;
use crate::config::file::rate_limit::RateLimitRefFile;
use crate::filter::{GuardContext, GuardRefs, Guards, compile_guards};

/// Profile-level settings endpoints inherit.
pub(super) struct Defaults<'a> {
    pub(super) profile: &'a Arc<str>,
    pub(super) deadline: Duration,
    pub(super) max_part_bytes: usize,
    pub(super) auth: &'a Option<Spanned<AuthRuleFile>>,
    pub(super) rate_limit: &'a Option<Spanned<RateLimitRefFile>>,
    pub(super) ip_list: &'a Option<crate::config::file::Text>,
    pub(super) cors: &'a Option<crate::config::file::Text>,
    pub(super) cache_control: &'a Option<crate::config::file::Text>,
    pub(super) scripts: &'a Option<crate::config::file::script::ScriptRefs>,
}

pub(super) fn endpoint(
    d: &mut Diagnostics,
    e: &EndpointFile,
    ei: usize,
    defaults: &Defaults<'_>,
    cx: &Context<'_>,
) -> Option<Endpoint> {
    let key = format!("endpoints[{ei}]");
    let before = d.errors.len();
    let method = method(d, &e.method, &format!("{key}.method"));
    let path = match EndpointPath::parse(e.path.get_ref()) {
        Ok(p) => Some(p),
        Err(msg) => {
            d.error(e.path.span(), format!("{key}.path"), msg);
            None
        }
    };
    let deadline = duration(
        d,
        &e.deadline,
        &format!("{key}.deadline"),
        defaults.deadline,
    );
    let parts_file = &e.parts;
    let is_saga = saga_keys(d, e, &key);
    if parts_file.is_empty() && !is_saga {
        d.error(
            e.path.span(),
            format!("{key}.parts"),
            "an endpoint needs at least one [[endpoints.parts]]",
        );
    }
    // Names first: templates may refer to any part of the endpoint, in any order.
    let names = part_names(d, parts_file, &key);
    let path = path?;
    let saga = if is_saga {
        let scx = crate::saga::compile::Context {
            upstreams: cx.upstreams,
            declared: cx.declared,
            captures: &path.captures,
            store: cx.saga,
            flag: e.saga.as_ref().map_or(e.path.span(), |s| s.span()),
        };
        crate::saga::compile::compile(d, &e.steps, &key, &scx).map(Arc::new)
    } else {
        None
    };
    let scope = Scope {
        captures: &path.captures,
        parts: &names,
    };
    let label: Arc<str> = Arc::from(format!("{method} {}", path.as_str()));
    let id: Arc<str> = Arc::from(format!("{} {label}", defaults.profile));
    let guards = endpoint_guards(d, e, &key, defaults, &id, cx.guards);
    let scripts = endpoint_scripts(d, e, &key, defaults, cx);
    let cache_control = cache_control(d, e, &key, defaults);
    let mut parts = Vec::new();
    let mut deps = Vec::new();
    for (pi, p) in parts_file.iter().enumerate() {
        let pkey = format!("{key}.parts[{pi}]");
        let pc = PartContext {
            key: &pkey,
            scope: &scope,
            max_part_bytes: defaults.max_part_bytes,
            profile: defaults.profile,
            label: &label,
            deadline,
        };
        if let Some((part, ds)) = part(d, p, &pc, cx) {
            parts.push(part);
            deps.push(ds);
        }
    }
    if d.errors.len() > before {
        return None;
    }
    project_for_templates(&mut parts);
    let plan = plan(d, deps, &names, parts_file, &key)?;
    let stats = EndpointStats::new(cx.metrics, defaults.profile, &label);
    let metrics = cx.metrics.route(&id, None);
    Some(Endpoint {
        id,
        method,
        reads_body: parts
            .iter()
            .any(|p| part_vars(p).iter().any(|v| v.source == Source::Body)),
        has_flatten: parts.iter().any(|p| p.flatten),
        size_hint: 256 + 512 * parts.len(),
        path,
        deadline,
        guards,
        parts: parts.into(),
        plan,
        stats,
        metrics,
        scripts,
        cache_control,
        saga,
    })
}

/// `saga = true` takes `steps` and no `parts`; `steps` need `saga = true`. Returns whether the
/// endpoint is a saga.
fn saga_keys(d: &mut Diagnostics, e: &EndpointFile, key: &str) -> bool {
    let is_saga = e.saga.as_ref().is_some_and(|s| *s.get_ref());
    let span = e.saga.as_ref().map_or(e.path.span(), |s| s.span());
    if is_saga && !e.parts.is_empty() {
        d.error(
            span.clone(),
            format!("{key}.parts"),
            "a saga endpoint runs `steps`, not `parts`: give one or the other",
        );
    }
    if is_saga && e.steps.is_empty() {
        d.error(
            span,
            format!("{key}.steps"),
            "a saga endpoint needs at least one [[endpoints.steps]]",
        );
    }
    if !is_saga && !e.steps.is_empty() {
        d.error(
            e.steps[0].name.span(),
            format!("{key}.steps"),
            "`steps` run only on a saga endpoint: add `saga = true`",
        );
    }
    is_saga
}

/// `Cache-Control` of the endpoint's answers: its own, else its profile's, else
/// `private, no-store` (answers are per caller).
fn cache_control(
    d: &mut Diagnostics,
    e: &EndpointFile,
    key: &str,
    defaults: &Defaults<'_>,
) -> http::HeaderValue {
    let default = http::HeaderValue::from_static("private, no-store");
    let (value, key) = match (&e.cache_control, defaults.cache_control) {
        (Some(v), _) => (v, format!("{key}.cache_control")),
        (None, Some(v)) => (v, "cache_control".to_string()),
        (None, None) => return default,
    };
    d.parse(value, key, |s| {
        if s.trim().is_empty() {
            return Err("cache_control must not be empty".to_string());
        }
        http::HeaderValue::from_str(s).map_err(|_| format!("bad Cache-Control value \"{s}\""))
    })
    .unwrap_or(default)
}

/// The scripts of one endpoint: its own `scripts`, else its profile's (whose errors the profile
/// reported once).
fn endpoint_scripts(
    d: &mut Diagnostics,
    e: &EndpointFile,
    key: &str,
    defaults: &Defaults<'_>,
    cx: &Context<'_>,
) -> Option<crate::script::Chain> {
    let place = crate::script::compile::Place::Bff;
    if let Some(own) = &e.scripts {
        return crate::script::compile::chain(d, Some(own), key, cx.scripts, place);
    }
    let mut quiet = Diagnostics {
        source: d.source,
        errors: &mut Vec::new(),
    };
    let inherited = defaults.scripts.as_ref();
    crate::script::compile::chain(&mut quiet, inherited, key, cx.scripts, place)
}

/// Part names: tokens, unique, not a reserved template source.
fn part_names<'f>(d: &mut Diagnostics, parts_file: &'f [PartFile], key: &str) -> Vec<&'f str> {
    let mut names: Vec<&str> = Vec::new();
    for (pi, p) in parts_file.iter().enumerate() {
        let n = p.name.get_ref().as_str();
        let pkey = format!("{key}.parts[{pi}].name");
        if !is_token(n) {
            d.error(
                p.name.span(),
                pkey,
                format!("bad part name \"{n}\": use letters, digits, `-` or `_`"),
            );
        } else if RESERVED_SOURCES.contains(&n) || n.starts_with('_') || n == PARTIAL_KEY {
            d.error(
                p.name.span(),
                pkey,
                format!("part name \"{n}\" is reserved (claims, path, query, header, body and names starting with `_`)"),
            );
        } else if names.contains(&n) {
            d.error(p.name.span(), pkey, format!("duplicate part name `{n}`"));
        }
        names.push(n);
    }
    names
}

/// The order parts run in (a part that reads another's answer runs after it); a cycle is an
/// error naming the chain.
fn plan(
    d: &mut Diagnostics,
    deps: Vec<Vec<usize>>,
    names: &[&str],
    parts_file: &[PartFile],
    key: &str,
) -> Option<Plan> {
    match Plan::new(deps) {
        Ok(p) => Some(p),
        Err(cycle) => {
            let chain: Vec<&str> = cycle.iter().map(|&i| names[i]).collect();
            let first = &parts_file[cycle[0]];
            d.error(
                first.path.span(),
                format!("{key}.parts[{}].path", cycle[0]),
                format!(
                    "parts depend on each other in a cycle: {}",
                    chain.join(" -> ")
                ),
            );
            None
        }
    }
}

/// Every template variable a part reads.
pub(super) fn part_vars(p: &Part) -> Vec<&Var> {
    let mut out: Vec<&Var> = p.path.vars().collect();
    if let Some(b) = &p.body {
        out.extend(b.vars());
    }
    for (_, t) in p.set_headers.iter() {
        out.extend(t.vars());
    }
    out
}

/// Lets each part's parser keep what other parts' templates read from its answer.
fn project_for_templates(parts: &mut [Part]) {
    let mut reads: Vec<Vec<Box<[Box<str>]>>> = vec![Vec::new(); parts.len()];
    for p in parts.iter() {
        for v in part_vars(p) {
            if let Source::Part(j) = v.source {
                reads[j].push(v.path.clone());
            }
        }
    }
    for (p, r) in parts.iter_mut().zip(reads) {
        let r: Vec<&[Box<str>]> = r.iter().map(|x| &**x).collect();
        p.shape.keep_for_templates(&r);
    }
}

/// The guards of one endpoint: its own `auth` / `rate_limit`, else its profile's.
fn endpoint_guards(
    d: &mut Diagnostics,
    e: &EndpointFile,
    key: &str,
    defaults: &Defaults<'_>,
    id: &str,
    ctx: GuardContext<'_>,
) -> Guards {
    let refs = GuardRefs {
        auth: e.auth.as_ref().or(defaults.auth.as_ref()),
        rate_limit: e.rate_limit.as_ref().or(defaults.rate_limit.as_ref()),
        ip_list: e.ip_list.as_ref().or(defaults.ip_list.as_ref()),
        cors: e.cors.as_ref().or(defaults.cors.as_ref()),
    };
    if e.auth.is_none() && e.rate_limit.is_none() && e.ip_list.is_none() && e.cors.is_none() {
        // All inherited: already reported once by `check_profile_guards`.
        let mut found = Vec::new();
        let mut quiet = Diagnostics {
            source: d.source,
            errors: &mut found,
        };
        return compile_guards(&mut quiet, key, refs, id, ctx);
    }
    compile_guards(d, key, refs, id, ctx)
}
