//! Compiling `[auth.providers.*]` and `auth = {...}` tables, with every problem reported at its
//! file:line:col.

mod api_key;
mod key_source;
mod rule;

pub use rule::compile_rule;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;
use toml::Spanned;

use super::AuthRuntime;
use super::claims::ClaimPath;
use super::keys::KeySet;
use super::provider::{self, Provider, ProviderSettings, Secret};
use crate::config::diag::Diagnostics;
use crate::config::file::Text;
use crate::config::file::auth::{AuthFile, ProviderFile};

/// Shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash size for HS256).
pub const MIN_SECRET_BYTES: usize = 32;

/// Headers a claim may never be forwarded as.
pub(super) const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "authorization",
    "cookie",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "upgrade",
];

fn fallbacks() -> &'static Mutex<HashMap<String, String>> {
    static F: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    F.get_or_init(Default::default)
}

/// Registers a value used for `secret_env = NAME` when the variable is not set. Only
/// `portico demo` and `portico token` do this, with the documented dev secret, so the shipped
/// config runs out of the box; `portico run` never does.
pub fn set_secret_fallback(env: &str, value: &str) {
    fallbacks()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(env.to_string(), value.to_string());
}

/// Whether `secret_env = NAME` finds a secret (the variable, or a registered fallback).
pub fn secret_env_is_set(name: &str) -> bool {
    env_secret(name).is_some()
}

fn env_secret(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| {
            fallbacks()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .cloned()
        })
}

/// Compiles every provider; unchanged ones are taken from `previous` as they are (token cache,
/// fetched JWKS).
pub fn compile_providers(
    d: &mut Diagnostics,
    file: &AuthFile,
    previous: Option<&AuthRuntime>,
    metrics: &crate::metrics::Metrics,
) -> AuthRuntime {
    let mut providers = BTreeMap::new();
    let mut api_keys = BTreeMap::new();
    let mut forwarded: Vec<HeaderName> = Vec::new();
    let mut files = Vec::new();
    for (name, f) in &file.providers {
        let key = format!("auth.providers.{}", name.get_ref());
        match f.kind.as_ref().map(|k| k.get_ref().as_str()) {
            None | Some("jwt") => api_key::api_key_keys_absent(d, &key, f),
            Some("api_key") => {
                if let Some(path) = &f.keys_file {
                    files.push(crate::config::resolve(&d.source.path, path.get_ref()));
                }
                if let Some(p) = api_key::compile(d, &key, name, f) {
                    if let Some(h) = &p.forward_consumer {
                        if !forwarded.contains(h) {
                            forwarded.push(h.clone());
                        }
                    }
                    api_keys.insert(Arc::from(name.get_ref().as_str()), Arc::new(p));
                }
                continue;
            }
            Some(other) => {
                let span = f.kind.as_ref().map(|k| k.span()).unwrap_or(name.span());
                d.error(
                    span,
                    format!("{key}.kind"),
                    format!("unknown provider kind \"{other}\" (use \"jwt\" or \"api_key\")"),
                );
                continue;
            }
        }
        let referenced = [
            &f.secret_file,
            &f.public_key_file,
            &f.jwks_file,
            &f.private_key_file,
        ];
        for path in referenced.into_iter().flatten() {
            files.push(crate::config::resolve(&d.source.path, path.get_ref()));
        }
        let Some((settings, keys, signer)) = settings(d, &key, name, f) else {
            continue;
        };
        for (_, h) in &settings.forward_claims {
            if !forwarded.contains(h) {
                forwarded.push(h.clone());
            }
        }
        let name: Arc<str> = Arc::from(name.get_ref().as_str());
        let kept = previous
            .and_then(|p| p.providers.get(&name))
            .filter(|p| p.settings == settings)
            .cloned();
        let provider =
            kept.unwrap_or_else(|| Arc::new(Provider::new(name.clone(), settings, keys, signer)));
        if let Some(remote) = provider.remote_jwks() {
            remote.register_metrics(metrics);
        }
        providers.insert(name, provider);
    }
    AuthRuntime {
        providers,
        api_keys,
        forwarded_headers: forwarded.into_boxed_slice(),
        files,
    }
}

type Compiled = (
    ProviderSettings,
    Option<KeySet>,
    Option<(jsonwebtoken::EncodingKey, Algorithm)>,
);

fn settings(d: &mut Diagnostics, key: &str, name: &Text, f: &ProviderFile) -> Option<Compiled> {
    let before = d.errors.len();
    let (Some(issuer), Some(audiences), Some(listed)) = (&f.issuer, &f.audiences, &f.algorithms)
    else {
        d.error(
            name.span(),
            key,
            "a JWT provider needs `issuer`, `audiences` and `algorithms` (or set `kind = \"api_key\"`)",
        );
        return None;
    };
    if issuer.get_ref().is_empty() {
        d.error(issuer.span(), format!("{key}.issuer"), "must not be empty");
    }
    if audiences.get_ref().is_empty() {
        d.error(
            audiences.span(),
            format!("{key}.audiences"),
            "needs at least one audience (tokens must name one of them in `aud`)",
        );
    }
    let audiences: Vec<String> = audiences
        .get_ref()
        .iter()
        .map(|a| a.get_ref().clone())
        .collect();
    let algorithms = algorithms(d, key, listed);
    let leeway = d.duration_or(&f.leeway, &format!("{key}.leeway"), Duration::from_secs(30));
    if leeway > Duration::from_secs(3600) {
        if let Some(l) = &f.leeway {
            d.error(l.span(), format!("{key}.leeway"), "must be at most 1h");
        }
    }

    let (key_config, static_keys, secret) = key_source::select(d, key, f, issuer.span());
    if let Some(algs) = &algorithms {
        key_source::check_algorithms(
            d,
            key,
            listed.get_ref(),
            algs,
            key_config.as_ref(),
            static_keys.as_ref(),
        );
    }
    let (private_key, signer) = signer(d, key, f, algorithms.as_deref(), secret.as_deref());
    let cookie = f.cookie.as_ref().and_then(|c| cookie_name(d, key, c));
    let forward_claims = forward_claims(d, key, f);
    let cache_size = d.count_or(
        &f.cache_size,
        &format!("{key}.cache_size"),
        (0, 10_000_000),
        10_000,
    );
    if d.errors.len() > before {
        return None;
    }
    let settings = ProviderSettings {
        issuer: issuer.get_ref().clone(),
        audiences,
        algorithms: algorithms?,
        key: key_config?,
        private_key,
        leeway,
        cookie,
        forward_claims,
        strip_token: f.strip_token.unwrap_or(false),
        cache_size,
    };
    Some((settings, static_keys, signer))
}

/// `private_key_file` and the signer `portico token` uses (secret or private key).
fn signer(
    d: &mut Diagnostics,
    key: &str,
    f: &ProviderFile,
    algorithms: Option<&[Algorithm]>,
    secret: Option<&[u8]>,
) -> (
    Option<Secret>,
    Option<(jsonwebtoken::EncodingKey, Algorithm)>,
) {
    let private_key = f.private_key_file.as_ref().and_then(|p| {
        let path = crate::config::resolve(&d.source.path, p.get_ref());
        match std::fs::read(&path) {
            Ok(bytes) => Some((p, Secret(bytes))),
            Err(e) => {
                d.error(
                    p.span(),
                    format!("{key}.private_key_file"),
                    format!("cannot read {}: {e}", path.display()),
                );
                None
            }
        }
    });
    let signer = match algorithms {
        Some(algs) => {
            let result = provider::signer(
                algs,
                secret,
                private_key.as_ref().map(|(_, s)| s.0.as_slice()),
            );
            match (result, &private_key) {
                (Ok(s), _) => s,
                (Err(msg), Some((p, _))) => {
                    d.error(p.span(), format!("{key}.private_key_file"), msg);
                    None
                }
                (Err(_), None) => None,
            }
        }
        None => None,
    };

    (private_key.map(|(_, s)| s), signer)
}

/// `cookie`: where a browser's token may come from instead of `Authorization`.
fn cookie_name(d: &mut Diagnostics, key: &str, c: &Text) -> Option<String> {
    let ok = !c.get_ref().is_empty()
        && c.get_ref()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        d.error(
            c.span(),
            format!("{key}.cookie"),
            format!("bad cookie name \"{}\"", c.get_ref()),
        );
    }
    ok.then(|| c.get_ref().clone())
}

/// `forward_claims = { claim = "header" }`: never into a header that frames or routes the
/// request, or carries other credentials.
fn forward_claims(d: &mut Diagnostics, key: &str, f: &ProviderFile) -> Vec<(String, HeaderName)> {
    let mut forward_claims = Vec::new();
    for (claim, header) in &f.forward_claims {
        let k = format!("{key}.forward_claims.{}", claim.get_ref());
        if let Err(msg) = ClaimPath::parse(claim.get_ref()) {
            d.error(claim.span(), k.clone(), msg);
            continue;
        }
        let name = header.get_ref().to_ascii_lowercase();
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(_) if RESERVED_HEADERS.contains(&name.as_str()) => {
                d.error(header.span(), k, format!("`{name}` cannot carry a claim"))
            }
            Ok(h) => forward_claims.push((claim.get_ref().clone(), h)),
            Err(_) => d.error(
                header.span(),
                k,
                format!("bad header name \"{}\"", header.get_ref()),
            ),
        }
    }
    forward_claims
}

fn algorithms(
    d: &mut Diagnostics,
    key: &str,
    listed: &Spanned<Vec<Text>>,
) -> Option<Vec<Algorithm>> {
    if listed.get_ref().is_empty() {
        d.error(
            listed.span(),
            format!("{key}.algorithms"),
            "needs at least one algorithm, e.g. [\"RS256\"]",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, a) in listed.get_ref().iter().enumerate() {
        match Algorithm::from_str(a.get_ref()) {
            Ok(alg) => out.push(alg),
            Err(_) => {
                ok = false;
                let why = if a.get_ref().eq_ignore_ascii_case("none") {
                    "unsigned tokens (`none`) are never accepted".to_string()
                } else {
                    format!(
                        "unknown algorithm \"{}\" (use HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 or EdDSA)",
                        a.get_ref()
                    )
                };
                d.error(a.span(), format!("{key}.algorithms[{i}]"), why);
            }
        }
    }
    ok.then_some(out)
}
