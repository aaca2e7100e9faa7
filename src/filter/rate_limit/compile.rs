//! Compiling `[rate_limits.*]` policies and `rate_limit = ...` references.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderName;
use toml::Spanned;

use super::cluster::OnStoreError;
use super::{HeaderMode, KeyPart, OnMissing, Policy, PolicySettings, Scope};
use crate::cluster::Cluster;
use crate::config::diag::Diagnostics;
use crate::config::file::rate_limit::{KeyFile, RateLimitFile, RateLimitRefFile};
use crate::config::units::parse_rate;
use crate::filter::auth::claims::ClaimPath;

/// Policies by name.
pub type Policies = BTreeMap<Arc<str>, Arc<Policy>>;

/// Compiles every policy; a policy whose settings (and store) did not change keeps its
/// buckets (and counters) from `previous`. `cluster` is the `[cluster]` store, if configured.
pub fn compile_policies(
    d: &mut Diagnostics,
    files: &BTreeMap<Spanned<String>, RateLimitFile>,
    previous: Option<&Policies>,
    cluster: Option<&Arc<Cluster>>,
    metrics: &crate::metrics::Metrics,
) -> Policies {
    let mut out = BTreeMap::new();
    for (name, f) in files {
        let key = format!("rate_limits.{}", name.get_ref());
        let Some(settings) = settings(d, &key, f, cluster.is_some()) else {
            continue;
        };
        let name: Arc<str> = Arc::from(name.get_ref().as_str());
        let store = cluster.filter(|_| matches!(settings.scope, Scope::Cluster(_)));
        let kept = previous
            .and_then(|p| p.get(&name))
            .filter(|p| p.settings == settings && same_store(p, store))
            .cloned();
        let policy = kept.unwrap_or_else(|| {
            let policy = match store {
                Some(c) => Policy::clustered(name.clone(), settings, c.clone()),
                None => Policy::new(name.clone(), settings),
            };
            Arc::new(policy.with_metrics(metrics))
        });
        out.insert(name, policy);
    }
    out
}

fn same_store(p: &Policy, store: Option<&Arc<Cluster>>) -> bool {
    match (p.cluster(), store) {
        (None, None) => true,
        (Some(c), Some(s)) => Arc::ptr_eq(c.store(), s),
        _ => false,
    }
}

/// `scope` and `on_store_error`; a cluster scope needs `[cluster]`.
fn scope(d: &mut Diagnostics, key: &str, f: &RateLimitFile, has_cluster: bool) -> Scope {
    let on_error = match f.on_store_error.as_ref().map(|t| (t, t.get_ref().as_str())) {
        None | Some((_, "local")) => OnStoreError::Local,
        Some((_, "allow")) => OnStoreError::Allow,
        Some((_, "deny")) => OnStoreError::Deny,
        Some((t, other)) => {
            d.error(
                t.span(),
                format!("{key}.on_store_error"),
                format!("unknown value \"{other}\" (use local, allow or deny)"),
            );
            OnStoreError::Local
        }
    };
    match f.scope.as_ref().map(|t| (t, t.get_ref().as_str())) {
        None | Some((_, "local")) => {
            if let Some(t) = &f.on_store_error {
                d.error(
                    t.span(),
                    format!("{key}.on_store_error"),
                    "only a policy with scope = \"cluster\" uses a store",
                );
            }
            Scope::Local
        }
        Some((t, "cluster")) => {
            if !has_cluster {
                d.error(
                    t.span(),
                    format!("{key}.scope"),
                    "scope = \"cluster\" needs a [cluster] table with the Redis store (redis = \"redis://HOST:PORT\")",
                );
            }
            Scope::Cluster(on_error)
        }
        Some((t, other)) => {
            d.error(
                t.span(),
                format!("{key}.scope"),
                format!("unknown value \"{other}\" (use local or cluster)"),
            );
            Scope::Local
        }
    }
}

fn settings(
    d: &mut Diagnostics,
    key: &str,
    f: &RateLimitFile,
    has_cluster: bool,
) -> Option<PolicySettings> {
    let before = d.errors.len();
    let scope = scope(d, key, f, has_cluster);
    let rate = d.parse(&f.rate, format!("{key}.rate"), parse_rate);
    let burst = match (&f.burst, rate) {
        (None, Some(r)) => r.count,
        (None, None) => 1,
        (Some(b), _) if (1..=10_000_000).contains(b.get_ref()) => *b.get_ref() as u32,
        (Some(b), _) => {
            d.error(
                b.span(),
                format!("{key}.burst"),
                "must be between 1 and 10000000",
            );
            1
        }
    };
    let parts: Vec<&String> = match f.key.get_ref() {
        KeyFile::One(t) => vec![t],
        KeyFile::Many(v) => v.iter().collect(),
    };
    if parts.is_empty() {
        d.error(
            f.key.span(),
            format!("{key}.key"),
            "needs at least one key part",
        );
    }
    let multi = matches!(f.key.get_ref(), KeyFile::Many(_));
    let mut key_parts = Vec::new();
    for (i, t) in parts.iter().enumerate() {
        let k = if multi {
            format!("{key}.key[{i}]")
        } else {
            format!("{key}.key")
        };
        match key_part(t) {
            Ok(p) => key_parts.push(p),
            Err(msg) => d.error(f.key.span(), k, msg),
        }
    }
    let on_missing = match f.on_missing_key.as_ref().map(|t| (t, t.get_ref().as_str())) {
        None | Some((_, "shared")) => OnMissing::Shared,
        Some((_, "deny")) => OnMissing::Deny,
        Some((_, "allow")) => OnMissing::Allow,
        Some((t, other)) => {
            d.error(
                t.span(),
                format!("{key}.on_missing_key"),
                format!("unknown value \"{other}\" (use shared, deny or allow)"),
            );
            OnMissing::Shared
        }
    };
    let headers = match f.headers.as_ref().map(|t| (t, t.get_ref().as_str())) {
        None | Some((_, "on_limit")) => HeaderMode::OnLimit,
        Some((_, "always")) => HeaderMode::Always,
        Some((t, other)) => {
            d.error(
                t.span(),
                format!("{key}.headers"),
                format!("unknown value \"{other}\" (use on_limit or always)"),
            );
            HeaderMode::OnLimit
        }
    };
    let max_keys = match &f.max_keys {
        None => 100_000,
        Some(v) if (1..=100_000_000).contains(v.get_ref()) => *v.get_ref() as usize,
        Some(v) => {
            d.error(
                v.span(),
                format!("{key}.max_keys"),
                "must be between 1 and 100000000",
            );
            1
        }
    };
    if d.errors.len() > before {
        return None;
    }
    Some(PolicySettings {
        rate: rate?,
        burst,
        key: key_parts,
        on_missing,
        max_keys,
        headers,
        scope,
    })
}

fn key_part(text: &str) -> Result<KeyPart, String> {
    match text.split_once(':') {
        None if text == "ip" => Ok(KeyPart::Ip),
        None if text == "route" => Ok(KeyPart::Route),
        None if text == "consumer" => Ok(KeyPart::Consumer),
        Some(("header", name)) => {
            HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
                .map(KeyPart::Header)
                .map_err(|_| format!("bad header name \"{name}\" in key \"{text}\""))
        }
        Some(("claim", name)) => ClaimPath::parse(name.trim()).map(KeyPart::Claim),
        _ => Err(format!(
            "unknown key \"{text}\" (use ip, route, consumer, header:NAME or claim:NAME)"
        )),
    }
}

/// Resolves a route's or BFF profile's `rate_limit = ...`; `has_auth` says whether claims will
/// be there for `claim:` keys.
pub fn compile_refs(
    d: &mut Diagnostics,
    key: &str,
    refs: &Spanned<RateLimitRefFile>,
    cx: crate::filter::GuardContext<'_>,
    has_auth: bool,
) -> Vec<Arc<Policy>> {
    let names = refs.get_ref().names();
    if names.is_empty() {
        d.error(refs.span(), key, "names no policy");
    }
    let mut out = Vec::new();
    for n in names {
        match cx.policies.get(n) {
            Some(p) if p.needs_claims() && !has_auth => {
                let what = if p.needs_consumer() {
                    "an API-key consumer"
                } else {
                    "a claim"
                };
                d.error(
                    refs.span(),
                    key,
                    format!(
                        "policy `{n}` keys on {what}, but there is no `auth` here to verify one"
                    ),
                )
            }
            Some(p) => out.push(p.clone()),
            // Declared but failed to compile: reported at its definition.
            None if cx.declared_policies.contains(&n) => {}
            None => d.error(
                refs.span(),
                key,
                format!(
                    "unknown rate-limit policy `{n}`{}",
                    crate::config::shape::suggestion(n, cx.declared_policies.iter().copied())
                ),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts() {
        assert_eq!(key_part("ip").unwrap(), KeyPart::Ip);
        assert_eq!(key_part("route").unwrap(), KeyPart::Route);
        assert_eq!(
            key_part("header:X-Api-Key").unwrap(),
            KeyPart::Header(HeaderName::from_static("x-api-key"))
        );
        assert!(matches!(
            key_part("claim:org.id").unwrap(),
            KeyPart::Claim(_)
        ));
        assert!(key_part("cookie:x").is_err());
        assert!(key_part("header:bad name").is_err());
        assert!(key_part("claim:").is_err());
    }
}
