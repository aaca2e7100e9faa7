//! One `bff/*.toml` profile: its name, mount, deadline and size defaults, user-agent patterns,
//! and its endpoints (each compiled by `endpoint`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use http::Method;

use super::endpoint::{Defaults, endpoint};
use super::{Context, DEFAULT_DEADLINE, DEFAULT_MAX_PART_BYTES, duration, is_token, size};
use crate::bff::file::ProfileFile;
use crate::bff::select::Glob;
use crate::bff::{Endpoint, Profile};
use crate::config::Diagnostics;
use crate::config::file::Text;
use crate::filter::{GuardContext, GuardRefs, compile_guards};

pub(super) fn profile(
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
    let name = profile_name(d, f, stem, path, names);
    let mount = f.mount.as_ref().and_then(|m| mount(d, m, &name, mounts));
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
    let place = crate::script::compile::Place::Bff;
    let _ = crate::script::compile::chain(d, f.scripts.as_ref(), "scripts", cx.scripts, place);
    let name: Arc<str> = Arc::from(name);
    let defaults = Defaults {
        profile: &name,
        deadline,
        max_part_bytes,
        auth: &f.auth,
        rate_limit: &f.rate_limit,
        ip_list: &f.ip_list,
        cors: &f.cors,
        cache_control: &f.cache_control,
        scripts: &f.scripts,
    };
    let endpoints = endpoints(d, f, &defaults, cx);
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

/// The profile's name (default: the file's stem): a token, unique across profiles.
fn profile_name(
    d: &mut Diagnostics,
    f: &ProfileFile,
    stem: String,
    path: PathBuf,
    names: &mut HashMap<String, PathBuf>,
) -> String {
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
    name
}

/// `mount`: a path prefix owned by this profile, not `/`, unique across profiles.
fn mount(
    d: &mut Diagnostics,
    m: &Text,
    name: &str,
    mounts: &mut HashMap<String, String>,
) -> Option<Box<str>> {
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
    mounts.insert(trimmed.to_string(), name.to_string());
    Some(Box::<str>::from(trimmed))
}

/// The profile's endpoints; a method and path may appear once.
fn endpoints(
    d: &mut Diagnostics,
    f: &ProfileFile,
    defaults: &Defaults<'_>,
    cx: &Context<'_>,
) -> Vec<Endpoint> {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut seen: HashMap<(Method, String), usize> = HashMap::new();
    for (i, e) in f.endpoints.iter().enumerate() {
        let Some(ep) = endpoint(d, e, i, defaults, cx) else {
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
    endpoints
}

// Guards (auth, then rate limits) use the same compiler as routes. An endpoint's `auth` and
// `rate_limit` override its profile's; the `route` rate-limit key buckets per endpoint id.

/// Checks the profile-level `auth` and `rate_limit` once (key paths relative to the file).
fn check_profile_guards(d: &mut Diagnostics, f: &ProfileFile, name: &str, ctx: GuardContext<'_>) {
    if f.auth.is_none() && f.rate_limit.is_none() && f.ip_list.is_none() && f.cors.is_none() {
        return;
    }
    let mut found = Vec::new();
    let mut scratch = Diagnostics {
        source: d.source,
        errors: &mut found,
    };
    let refs = GuardRefs {
        auth: f.auth.as_ref(),
        rate_limit: f.rate_limit.as_ref(),
        ip_list: f.ip_list.as_ref(),
        cors: f.cors.as_ref(),
    };
    let _ = compile_guards(&mut scratch, "", refs, name, ctx);
    for mut e in found {
        if let Some(k) = e.key.strip_prefix('.') {
            e.key = k.to_string();
        }
        d.errors.push(e);
    }
}
