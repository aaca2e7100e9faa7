//! `[scripts.NAME]` -> [`Scripts`], and a route's or endpoint's `scripts = [...]` -> [`Chain`].
//!
//! Every script is compiled to bytecode here (a syntax error is a config error at the script's
//! file:line:col) and loaded once in a scratch VM, so a top level that fails, a hook that is not
//! a function, a misspelt hook or a bad `buffer_body` is reported by `portico check` and keeps
//! the old config on reload. A script whose text and settings did not change keeps its id, so
//! worker VMs keep its loaded chunk across a reload.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use toml::Spanned;

use super::check::{self, ScriptError};
use super::metrics::{ScriptMetrics, ScriptStats};
use super::{Chain, HookSet, Script, Scripts};
use crate::config::diag::{ConfigError, Diagnostics};
use crate::config::file::script::{ScriptFile, ScriptRefs};
use crate::config::file::{GatewayFile, Text};
use crate::config::units::{parse_duration, parse_size};

/// Default time budget of one hook call.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(1);
/// Default cap of a buffered response body.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Default memory cap of one worker thread's VM.
pub const DEFAULT_MEMORY: usize = 16 * 1024 * 1024;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Where a chain runs: hooks that never run there are an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A proxy route (`on_request`, `on_response`).
    Route,
    /// A BFF endpoint (all three hooks).
    Bff,
}

/// Compiles every `[scripts.NAME]`; `metrics` is `None` for a check without a registry.
pub fn compile_scripts(
    d: &mut Diagnostics,
    file: &GatewayFile,
    previous: Option<&Scripts>,
    metrics: &crate::metrics::Metrics,
) -> Scripts {
    let memory_limit = file
        .limits
        .script_memory
        .as_ref()
        .and_then(|v| d.parse(v, "limits.script_memory", memory))
        .unwrap_or(DEFAULT_MEMORY);
    let families = (!file.scripts.is_empty()).then(|| ScriptMetrics::new(metrics));
    let mut out = Scripts {
        memory_limit,
        metrics: families.clone(),
        ..Scripts::default()
    };
    if file.scripts.is_empty() {
        return out;
    }
    let mut vm = match super::vm::Vm::new(memory_limit) {
        Ok(vm) => vm,
        Err(e) => {
            d.error(0..0, "scripts", format!("cannot build the script VM: {e}"));
            return out;
        }
    };
    for (name, f) in &file.scripts {
        let path = crate::config::resolve(&d.source.path, f.file.get_ref());
        out.files.push(path.clone());
        let Some(script) = one(d, name, f, &path, &mut vm) else {
            continue;
        };
        let kept = previous
            .and_then(|p| p.by_name.get(script.name.as_ref()))
            .filter(|p| p.fingerprint == script.fingerprint)
            .cloned();
        let script = kept.unwrap_or_else(|| {
            let stats = families
                .as_ref()
                .map_or_else(ScriptStats::default, |m| m.stats(&script.name));
            Arc::new(Script { stats, ..script })
        });
        out.by_name.insert(script.name.clone(), script);
    }
    out
}

fn memory(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    if n < 1024 * 1024 {
        return Err("must be at least 1MiB".into());
    }
    usize::try_from(n).map_err(|_| "too large".to_string())
}

/// Reads, compiles and checks one script.
fn one(
    d: &mut Diagnostics,
    name: &Spanned<String>,
    f: &ScriptFile,
    path: &std::path::Path,
    vm: &mut super::vm::Vm,
) -> Option<Script> {
    let key = format!("scripts.{}", name.get_ref());
    let budget = f
        .budget
        .as_ref()
        .and_then(|v| {
            d.parse(v, format!("{key}.budget"), |s| {
                let b = parse_duration(s)?;
                if b.is_zero() || b > Duration::from_secs(1) {
                    return Err("must be more than 0 and at most 1s".into());
                }
                Ok(b)
            })
        })
        .unwrap_or(DEFAULT_BUDGET);
    let max_body = f
        .max_body
        .as_ref()
        .and_then(|v| {
            d.parse(v, format!("{key}.max_body"), |s| {
                usize::try_from(parse_size(s)?).map_err(|_| "too large".to_string())
            })
        })
        .unwrap_or(DEFAULT_MAX_BODY);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            d.error(
                f.file.span(),
                format!("{key}.file"),
                format!("cannot read script {}: {e}", path.display()),
            );
            return None;
        }
    };
    let chunk_name: Arc<str> = Arc::from(f.file.get_ref().as_str());
    let report = |d: &mut Diagnostics, e: ScriptError| {
        d.errors.push(ConfigError {
            file: path.to_path_buf(),
            line: e.line,
            col: e.col,
            key: key.clone(),
            message: e.message,
        });
    };
    let bytecode = match check::compile(&text) {
        Ok(b) => b,
        Err(e) => {
            report(d, e);
            return None;
        }
    };
    let mut script = Script {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        name: Arc::from(name.get_ref().as_str()),
        chunk_name,
        bytecode: Arc::from(bytecode),
        hooks: HookSet::default(),
        buffer_body: false,
        max_body,
        budget,
        fingerprint: 0,
        stats: ScriptStats::default(),
    };
    match check::hooks(vm, &script, &text) {
        Ok((hooks, buffer_body)) => {
            script.hooks = hooks;
            script.buffer_body = buffer_body;
        }
        Err(errors) => {
            for e in errors {
                report(d, e);
            }
            return None;
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        &*script.bytecode,
        budget,
        max_body,
        script.buffer_body,
        &*script.chunk_name,
    )
        .hash(&mut h);
    script.fingerprint = h.finish();
    Some(script)
}

/// What `scripts = [...]` lists resolve against: the declared `[scripts]` (to tell a broken
/// script from an unknown one) and the compiled ones.
pub type Context<'a> = (&'a BTreeMap<Spanned<String>, ScriptFile>, &'a Scripts);

/// Resolves `scripts = [...]` of a route or BFF endpoint; `None` when the list is absent or
/// empty (then scripts cost nothing on that path).
pub fn chain(
    d: &mut Diagnostics,
    refs: Option<&ScriptRefs>,
    key: &str,
    (declared, scripts): Context<'_>,
    place: Place,
) -> Option<Chain> {
    let refs = refs?;
    let mut list = Vec::new();
    for (i, name) in refs.get_ref().iter().enumerate() {
        let key = format!("{key}.scripts[{i}]");
        match scripts.by_name.get(name.get_ref().as_str()) {
            Some(s) => {
                if place == Place::Route && !s.hooks.request && !s.hooks.response {
                    d.error(
                        name.span(),
                        key,
                        format!(
                            "script `{}` only defines on_aggregate, which runs on BFF endpoints",
                            s.name
                        ),
                    );
                    continue;
                }
                list.push(s.clone());
            }
            // Declared but broken: its own error was reported.
            None if declared.keys().any(|k| k.get_ref() == name.get_ref()) => {}
            None => d.error(name.span(), key, unknown(name, declared)),
        }
    }
    if list.is_empty() {
        return None;
    }
    let mut hooks = HookSet::default();
    let mut buffer_body = None;
    for s in &list {
        hooks.request |= s.hooks.request;
        hooks.response |= s.hooks.response;
        hooks.aggregate |= s.hooks.aggregate && place == Place::Bff;
        if s.buffer_body {
            buffer_body = Some(buffer_body.map_or(s.max_body, |b: usize| b.max(s.max_body)));
        }
    }
    Some(Chain {
        scripts: list.into_boxed_slice(),
        hooks,
        buffer_body,
        memory_limit: scripts.memory_limit,
    })
}

fn unknown(name: &Text, declared: &BTreeMap<Spanned<String>, ScriptFile>) -> String {
    let names: Vec<&str> = declared.keys().map(|k| k.get_ref().as_str()).collect();
    if names.is_empty() {
        format!(
            "unknown script `{}`: no [scripts] are declared",
            name.get_ref()
        )
    } else {
        format!(
            "unknown script `{}` (declared: {})",
            name.get_ref(),
            names.join(", ")
        )
    }
}

/// Adds the script files to the watched sources and returns their fingerprints for the config
/// version: an edited script is a new config.
pub fn add_sources(sources: &mut Vec<std::path::PathBuf>, scripts: &Scripts) -> Option<Vec<u8>> {
    for path in &scripts.files {
        if !sources.contains(path) {
            sources.push(path.clone());
        }
    }
    (!scripts.by_name.is_empty()).then(|| {
        scripts
            .by_name
            .values()
            .flat_map(|s| s.fingerprint.to_le_bytes())
            .collect()
    })
}
