//! Reading `bff/*.toml` and compiling the profiles. Every problem is recorded with the
//! profile file's line:col and key path, and checking carries on, so one pass reports all.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use http::header::{AUTHORIZATION, HeaderName};
use http::uri::PathAndQuery;
use toml::Spanned;

use super::cache::PartCache;
use super::file::{EndpointFile, PartFile, ProfileFile};
use super::json_template::{JsonTemplate, toml_to_json};
use super::metrics::{EndpointStats, PartStats};
use super::plan::Plan;
use super::select::{EndpointPath, Glob, Prefilter};
use super::shape::Shape;
use super::template::{Kind, RESERVED_SOURCES, Scope, Source, Template, Var};
use super::{Bff, Endpoint, PARTIAL_KEY, Part, Profile};
use crate::config::diag::{ConfigError, ConfigErrors, Diagnostics, SourceFile};
use crate::config::file::auth::AuthRuleFile;
use crate::config::file::rate_limit::RateLimitRefFile;
use crate::config::file::{BffSettingsFile, Text};
use crate::config::units::{parse_duration, parse_size};
use crate::filter::{GuardContext, Guards, compile_guards};
use crate::script::compile::Place;
use crate::upstream::Upstream;

const DEFAULT_DEADLINE: Duration = Duration::from_secs(1);
const DEFAULT_MAX_PART_BYTES: u64 = 1 << 20;
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
/// Headers a part may neither pass on nor set: hop-by-hop, framing, and the ones the gateway
/// owns (so a client or a template cannot forge them).
const OWNED_HEADERS: [&str; 14] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
    "portico-budget-ms",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// The profile files found for one load.
#[derive(Debug, Default)]
pub struct Sources {
    /// The profiles folder (watched for added or removed profiles).
    pub dir: PathBuf,
    /// Each profile file, sorted by file name, with its contents when it parsed.
    pub files: Vec<(SourceFile, Option<ProfileFile>)>,
    /// Problems reading or parsing them.
    pub errors: Vec<ConfigError>,
}

/// Reads and parses every `*.toml` in the profiles folder: `[bff] dir`, else `bff/` beside
/// gateway.toml (which may be absent: no profiles).
pub fn read_profiles(gateway: &SourceFile, settings: &BffSettingsFile) -> Sources {
    let explicit = settings.dir.as_ref();
    let dir = crate::config::resolve(
        &gateway.path,
        explicit.map_or("bff", |d| d.get_ref().as_str()),
    );
    let mut out = Sources {
        dir: dir.clone(),
        ..Sources::default()
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => return out,
        Err(e) => {
            let message = format!("cannot read the profiles folder {}: {e}", dir.display());
            match explicit {
                Some(t) => Diagnostics {
                    source: gateway,
                    errors: &mut out.errors,
                }
                .error(t.span(), "bff.dir", message),
                None => out.errors.extend(ConfigErrors::whole_file(&dir, message).0),
            }
            return out;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "toml")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                && p.is_file()
        })
        .collect();
    paths.sort();
    for path in paths {
        match crate::config::read_source(&path) {
            Err(e) => out.errors.extend(e.0),
            Ok(src) => match toml::from_str::<ProfileFile>(&src.text) {
                Ok(f) => out.files.push((src, Some(f))),
                Err(e) => {
                    out.errors.push(src.toml_error(&e));
                    out.files.push((src, None));
                }
            },
        }
    }
    out
}

/// What profiles are compiled against.
pub struct Context<'a> {
    /// Compiled upstreams.
    pub upstreams: &'a BTreeMap<Arc<str>, Arc<Upstream>>,
    /// Every upstream name in gateway.toml (some may have failed to compile).
    pub declared: &'a [&'a str],
    /// The gateway's metrics registry (one per process; series carry over reloads).
    pub metrics: &'a crate::metrics::Metrics,
    /// Auth providers and rate-limit policies that `auth` and `rate_limit` refer to.
    pub guards: GuardContext<'a>,
    /// The scripts `scripts = [...]` refers to.
    pub scripts: crate::script::compile::Context<'a>,
}

/// Compiles every parsed profile; problems go to `errors`.
pub fn compile(
    errors: &mut Vec<ConfigError>,
    gateway: &SourceFile,
    settings: &BffSettingsFile,
    sources: &Sources,
    cx: &Context<'_>,
) -> Bff {
    errors.extend(sources.errors.iter().cloned());
    let mut profiles: Vec<Profile> = Vec::new();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    let mut mounts: HashMap<String, String> = HashMap::new();
    let mut agents = Vec::new();
    for (src, file) in &sources.files {
        let Some(file) = file else { continue };
        let mut d = Diagnostics {
            source: src,
            errors: &mut *errors,
        };
        let Some((p, globs)) = profile(&mut d, file, cx, &mut names, &mut mounts) else {
            continue;
        };
        agents.push((p.name.clone(), globs));
        profiles.push(p);
    }
    profiles.sort_by(|a, b| a.name.cmp(&b.name));
    let index = |name: &str| profiles.iter().position(|p| &*p.name == name);
    let default = settings.default_profile.as_ref().and_then(|t| {
        let found = index(t.get_ref());
        if found.is_none() && !names.contains_key(t.get_ref()) {
            let known: Vec<&str> = profiles.iter().map(|p| &*p.name).collect();
            Diagnostics {
                source: gateway,
                errors: &mut *errors,
            }
            .error(
                t.span(),
                "bff.default_profile",
                format!(
                    "unknown profile `{}` (profiles in {}: {})",
                    t.get_ref(),
                    sources.dir.display(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        found
    });
    let mut mount_list: Vec<(Box<str>, usize)> = profiles
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.mount.clone().map(|m| (m, i)))
        .collect();
    mount_list.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    let mut agent_list = Vec::new();
    for (name, globs) in agents {
        if let Some(i) = index(&name) {
            agent_list.extend(globs.into_iter().map(|g| (g, i)));
        }
    }
    let mut prefilter = Prefilter::default();
    for p in &profiles {
        for e in p.endpoints.iter() {
            prefilter.add(&e.path);
        }
    }
    Bff {
        profiles: profiles.into_iter().map(Arc::new).collect(),
        mounts: mount_list.into(),
        default,
        agents: agent_list.into(),
        prefilter,
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn duration(d: &mut Diagnostics, v: &Option<Text>, key: &str, default: Duration) -> Duration {
    match v {
        None => default,
        Some(t) => match d.parse(t, key, parse_duration) {
            Some(x) if x.is_zero() => {
                d.error(t.span(), key, "must be more than 0");
                default
            }
            Some(x) => x,
            None => default,
        },
    }
}

fn size(d: &mut Diagnostics, v: &Option<Text>, key: &str, default: usize) -> usize {
    match v {
        None => default,
        Some(t) => match d.parse(t, key, parse_size) {
            Some(0) => {
                d.error(t.span(), key, "must be more than 0");
                default
            }
            Some(x) => usize::try_from(x).unwrap_or(usize::MAX),
            None => default,
        },
    }
}

fn method(d: &mut Diagnostics, v: &Option<Text>, key: &str) -> Method {
    let Some(t) = v else { return Method::GET };
    let upper = t.get_ref().to_ascii_uppercase();
    if METHODS.contains(&upper.as_str()) {
        Method::from_bytes(upper.as_bytes()).expect("standard method")
    } else {
        d.error(
            t.span(),
            key,
            format!(
                "unknown method \"{}\" (use one of {})",
                t.get_ref(),
                METHODS.join(", ")
            ),
        );
        Method::GET
    }
}

fn profile(
    d: &mut Diagnostics,
    f: &ProfileFile,
    cx: &Context<'_>,
    names: &mut HashMap<String, PathBuf>,
    mounts: &mut HashMap<String, String>,
) -> Option<(Profile, Vec<Glob>)> {
    let before = d.errors.len();
    let path = d.source.path.clone();
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (name, span) = match &f.name {
        Some(n) => (n.get_ref().clone(), n.span()),
        None => (stem, 0..0),
    };
    if !is_token(&name) {
        d.error(
            span.clone(),
            "name",
            format!("bad profile name \"{name}\": use letters, digits, `-` or `_` (the file name is the default)"),
        );
    } else if let Some(first) = names.get(&name) {
        d.error(
            span.clone(),
            "name",
            format!("profile `{name}` is already defined in {}", first.display()),
        );
    } else {
        names.insert(name.clone(), path);
    }
    let mount = f.mount.as_ref().and_then(|m| {
        let v = m.get_ref();
        let trimmed = v.trim_end_matches('/');
        if !v.starts_with('/') || v.contains(['?', '#', ' ', '%', '{', '}']) || trimmed.is_empty() {
            d.error(
                m.span(),
                "mount",
                format!("bad mount \"{v}\": a path prefix such as \"/mobile\" (not \"/\": use `x-client` or `default_profile` for unmounted paths)"),
            );
            return None;
        }
        if let Some(other) = mounts.get(trimmed) {
            d.error(
                m.span(),
                "mount",
                format!("mount \"{trimmed}\" is already used by profile `{other}`"),
            );
            return None;
        }
        mounts.insert(trimmed.to_string(), name.clone());
        Some(Box::<str>::from(trimmed))
    });
    let deadline = duration(d, &f.deadline, "deadline", DEFAULT_DEADLINE);
    let max_part_bytes = size(
        d,
        &f.max_part_bytes,
        "max_part_bytes",
        DEFAULT_MAX_PART_BYTES as usize,
    );
    let mut globs = Vec::new();
    for (i, ua) in f.user_agents.iter().enumerate() {
        if ua.get_ref().trim().is_empty() {
            d.error(ua.span(), format!("user_agents[{i}]"), "empty pattern");
        } else {
            globs.push(Glob::new(ua.get_ref()));
        }
    }
    check_profile_guards(d, f, &name, cx.guards);
    // Reported once here; endpoints that inherit the list resolve it quietly.
    let _ = crate::script::compile::chain(d, f.scripts.as_ref(), "scripts", cx.scripts, Place::Bff);
    let name: Arc<str> = Arc::from(name);
    let defaults = Defaults {
        profile: &name,
        deadline,
        max_part_bytes,
        auth: &f.auth,
        rate_limit: &f.rate_limit,
        scripts: &f.scripts,
    };
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut seen: HashMap<(Method, String), usize> = HashMap::new();
    for (i, e) in f.endpoints.iter().enumerate() {
        let Some(ep) = endpoint(d, e, i, &defaults, cx) else {
            continue;
        };
        let key = (ep.method.clone(), ep.path.as_str().to_string());
        if let Some(first) = seen.insert(key, i) {
            d.error(
                e.path.span(),
                format!("endpoints[{i}].path"),
                format!(
                    "{} {} is already defined by endpoints[{first}]",
                    ep.method,
                    ep.path.as_str()
                ),
            );
        }
        endpoints.push(ep);
    }
    if d.errors.len() > before {
        return None;
    }
    Some((
        Profile {
            name,
            mount,
            fingerprint: crate::config::inventory::fingerprint_bytes(d.source.text.as_bytes()),
            endpoints: endpoints.into(),
        },
        globs,
    ))
}

/// Profile-level settings endpoints inherit.
struct Defaults<'a> {
    profile: &'a Arc<str>,
    deadline: Duration,
    max_part_bytes: usize,
    auth: &'a Option<Spanned<AuthRuleFile>>,
    rate_limit: &'a Option<Spanned<RateLimitRefFile>>,
    scripts: &'a Option<crate::config::file::script::ScriptRefs>,
}

fn endpoint(
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
    if parts_file.is_empty() {
        d.error(
            e.path.span(),
            format!("{key}.parts"),
            "an endpoint needs at least one [[endpoints.parts]]",
        );
    }
    // Names first: templates may refer to any part of the endpoint, in any order.
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
    let path = path?;
    let scope = Scope {
        captures: &path.captures,
        parts: &names,
    };
    let label: Arc<str> = Arc::from(format!("{method} {}", path.as_str()));
    let id: Arc<str> = Arc::from(format!("{} {label}", defaults.profile));
    let guards = endpoint_guards(d, e, &key, defaults, &id, cx.guards);
    let scripts = match &e.scripts {
        Some(own) => crate::script::compile::chain(d, Some(own), &key, cx.scripts, Place::Bff),
        None => {
            let mut quiet = Diagnostics {
                source: d.source,
                errors: &mut Vec::new(),
            };
            let inherited = defaults.scripts.as_ref();
            crate::script::compile::chain(&mut quiet, inherited, &key, cx.scripts, Place::Bff)
        }
    };
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
    let plan = match Plan::new(deps) {
        Ok(p) => p,
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
            return None;
        }
    };
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
    })
}

/// Every template variable a part reads.
fn part_vars(p: &Part) -> Vec<&Var> {
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

struct PartContext<'a> {
    key: &'a str,
    scope: &'a Scope<'a>,
    max_part_bytes: usize,
    profile: &'a Arc<str>,
    label: &'a Arc<str>,
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

fn part(
    d: &mut Diagnostics,
    p: &PartFile,
    pc: &PartContext<'_>,
    cx: &Context<'_>,
) -> Option<(Part, Vec<usize>)> {
    let key = pc.key;
    let before = d.errors.len();
    let up_name = p.upstream.get_ref().as_str();
    let upstream = cx.upstreams.get(up_name).cloned();
    if !cx.declared.contains(&up_name) {
        d.error(
            p.upstream.span(),
            format!("{key}.upstream"),
            format!(
                "unknown upstream `{up_name}` (upstreams in gateway.toml: {})",
                if cx.declared.is_empty() {
                    "none".to_string()
                } else {
                    cx.declared.join(", ")
                }
            ),
        );
    }
    let method = method(d, &p.method, &format!("{key}.method"));
    let path = match Template::parse(p.path.get_ref(), Kind::Path, pc.scope) {
        Err(msg) => {
            d.error(p.path.span(), format!("{key}.path"), msg);
            None
        }
        Ok(t) => {
            let sample = t.sample();
            let valid = sample.starts_with('/')
                && !sample.contains('#')
                && PathAndQuery::try_from(sample.as_str()).is_ok();
            if !valid {
                d.error(
                    p.path.span(),
                    format!("{key}.path"),
                    format!("bad path \"{}\": must start with '/' and hold only URI characters (spaces and `#` must be percent-encoded)", p.path.get_ref()),
                );
            }
            Some(t)
        }
    };
    let body = p.body.as_ref().and_then(|b| {
        JsonTemplate::compile(b.get_ref(), pc.scope)
            .map_err(|msg| d.error(b.span(), format!("{key}.body"), msg))
            .ok()
    });
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
    let mut set_headers = Vec::new();
    for (name, value) in &p.set_headers {
        let hkey = format!("{key}.set_headers.{}", name.get_ref());
        let Some(h) = header_name(d, name.get_ref(), name.span(), &hkey) else {
            continue;
        };
        match Template::parse(value.get_ref(), Kind::Text, pc.scope) {
            Ok(t) => set_headers.push((h, t)),
            Err(msg) => d.error(value.span(), hkey, msg),
        }
    }
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
    let shape = shape(d, p, key);
    let max_bytes = size(
        d,
        &p.max_bytes,
        &format!("{key}.max_bytes"),
        pc.max_part_bytes,
    );
    let cache = p.cache.as_ref().map(|c| {
        let c = c.get_ref();
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
    });
    if d.errors.len() > before {
        return None;
    }
    let (upstream, path) = (upstream?, path?);
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
        shape: shape.unwrap_or_default(),
        flatten: p.flatten.unwrap_or(false),
        default,
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

// Guards (auth, then rate limits) use the same compiler as routes. An endpoint's `auth` and
// `rate_limit` override its profile's; the `route` rate-limit key buckets per endpoint id.

/// Checks the profile-level `auth` and `rate_limit` once (key paths relative to the file).
fn check_profile_guards(d: &mut Diagnostics, f: &ProfileFile, name: &str, ctx: GuardContext<'_>) {
    if f.auth.is_none() && f.rate_limit.is_none() {
        return;
    }
    let mut found = Vec::new();
    let mut scratch = Diagnostics {
        source: d.source,
        errors: &mut found,
    };
    let _ = compile_guards(
        &mut scratch,
        "",
        f.auth.as_ref(),
        f.rate_limit.as_ref(),
        name,
        ctx,
    );
    for mut e in found {
        if let Some(k) = e.key.strip_prefix('.') {
            e.key = k.to_string();
        }
        d.errors.push(e);
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
    let auth = e.auth.as_ref().or(defaults.auth.as_ref());
    let rate_limit = e.rate_limit.as_ref().or(defaults.rate_limit.as_ref());
    if e.auth.is_none() && e.rate_limit.is_none() {
        // All inherited: already reported once by `check_profile_guards`.
        let mut found = Vec::new();
        let mut quiet = Diagnostics {
            source: d.source,
            errors: &mut found,
        };
        return compile_guards(&mut quiet, key, auth, rate_limit, id, ctx);
    }
    compile_guards(d, key, auth, rate_limit, id, ctx)
}

/// Paths of the profile sources, for `Runtime.sources` (the folder first, then each file).
pub fn source_paths(sources: &Sources) -> impl Iterator<Item = &Path> {
    std::iter::once(sources.dir.as_path())
        .chain(sources.files.iter().map(|(s, _)| s.path.as_path()))
}
