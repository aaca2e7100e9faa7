//! Reading `bff/*.toml` and compiling the profiles. Every problem is recorded with the
//! profile file's line:col and key path, and checking carries on, so one pass reports all.

mod endpoint;
mod part;
pub(crate) use part::path_template;
mod profile;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::file::ProfileFile;
use super::select::Prefilter;
use super::{Bff, Profile};
use crate::config::diag::{ConfigError, ConfigErrors, Diagnostics, SourceFile};
use crate::config::file::{BffSettingsFile, Text};
use crate::filter::GuardContext;
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
            Ok(src) => {
                let (file, errors) = crate::config::shape::parse::<ProfileFile>(&src);
                out.errors.extend(errors);
                out.files.push((src, file));
            }
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
    /// `[saga]`: the log saga endpoints write to (`None`: a saga endpoint is an error).
    pub saga: Option<&'a std::sync::Arc<crate::saga::store::Store>>,
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
        let Some((p, globs)) = profile::profile(&mut d, file, cx, &mut names, &mut mounts) else {
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
    d.positive_duration_or(v, key, default)
}

fn size(d: &mut Diagnostics, v: &Option<Text>, key: &str, default: usize) -> usize {
    let n = d.positive_size_or(v, key, default as u64);
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A part's or endpoint's method (default GET); CONNECT and TRACE make no sense for a call
/// whose answer is JSON.
fn method(d: &mut Diagnostics, v: &Option<Text>, key: &str) -> Method {
    let Some(t) = v else { return Method::GET };
    match d.method(t, key) {
        Some(m) if m == Method::CONNECT || m == Method::TRACE => {
            d.error(
                t.span(),
                key,
                format!(
                    "method {m} is not allowed here (use one of {})",
                    METHODS.join(", ")
                ),
            );
            Method::GET
        }
        Some(m) => m,
        None => Method::GET,
    }
}

/// Paths of the profile sources, for `Runtime.sources` (the folder first, then each file).
pub fn source_paths(sources: &Sources) -> impl Iterator<Item = &Path> {
    std::iter::once(sources.dir.as_path())
        .chain(sources.files.iter().map(|(s, _)| s.path.as_path()))
}
