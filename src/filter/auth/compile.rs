//! Compiling `[auth.providers.*]` and `auth = {...}` tables, with every problem reported at its
//! file:line:col.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::{HeaderName, Uri};
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::Value;
use toml::Spanned;

use super::claims::ClaimPath;
use super::jwks::JwksSettings;
use super::keys::{KeySet, public_key_from_pem};
use super::provider::{self, KeyConfig, Provider, ProviderSettings, Secret};
use super::{AuthRule, AuthRuntime};
use crate::config::diag::Diagnostics;
use crate::config::file::Text;
use crate::config::file::auth::{AuthFile, AuthRuleFile, ProviderFile};
use crate::config::units::parse_duration;

/// Shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash size for HS256).
pub const MIN_SECRET_BYTES: usize = 32;

/// Headers a claim may never be forwarded as.
const RESERVED_HEADERS: [&str; 8] = [
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
    let mut forwarded: Vec<HeaderName> = Vec::new();
    let mut files = Vec::new();
    for (name, f) in &file.providers {
        let key = format!("auth.providers.{}", name.get_ref());
        let referenced = [
            &f.secret_file,
            &f.public_key_file,
            &f.jwks_file,
            &f.private_key_file,
        ];
        for path in referenced.into_iter().flatten() {
            files.push(crate::config::resolve(&d.source.path, path.get_ref()));
        }
        let Some((settings, keys, signer)) = settings(d, &key, f) else {
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
        forwarded_headers: forwarded.into_boxed_slice(),
        files,
    }
}

type Compiled = (
    ProviderSettings,
    Option<KeySet>,
    Option<(jsonwebtoken::EncodingKey, Algorithm)>,
);

fn settings(d: &mut Diagnostics, key: &str, f: &ProviderFile) -> Option<Compiled> {
    let before = d.errors.len();
    if f.issuer.get_ref().is_empty() {
        d.error(
            f.issuer.span(),
            format!("{key}.issuer"),
            "must not be empty",
        );
    }
    if f.audiences.get_ref().is_empty() {
        d.error(
            f.audiences.span(),
            format!("{key}.audiences"),
            "needs at least one audience (tokens must name one of them in `aud`)",
        );
    }
    let audiences: Vec<String> = f
        .audiences
        .get_ref()
        .iter()
        .map(|a| a.get_ref().clone())
        .collect();
    let algorithms = algorithms(d, key, f);
    let duration = |d: &mut Diagnostics, v: &Option<Text>, k: &str, default: Duration| {
        v.as_ref()
            .and_then(|v| d.parse(v, format!("{key}.{k}"), parse_duration))
            .unwrap_or(default)
    };
    let leeway = duration(d, &f.leeway, "leeway", Duration::from_secs(30));
    if leeway > Duration::from_secs(3600) {
        if let Some(l) = &f.leeway {
            d.error(l.span(), format!("{key}.leeway"), "must be at most 1h");
        }
    }

    let sources: Vec<(&str, &Text)> = [
        ("secret_env", &f.secret_env),
        ("secret_file", &f.secret_file),
        ("public_key_file", &f.public_key_file),
        ("jwks_file", &f.jwks_file),
        ("jwks_url", &f.jwks_url),
    ]
    .into_iter()
    .filter_map(|(n, v)| Some((n, v.as_ref()?)))
    .collect();
    let (key_config, static_keys, secret) = match sources.as_slice() {
        [] => {
            d.error(
                f.issuer.span(),
                key,
                "needs one key source: secret_env, secret_file, public_key_file, jwks_file or jwks_url",
            );
            (None, None, None)
        }
        [(kind, value)] => key_source(d, key, kind, value, f),
        [_, (kind, value), ..] => {
            d.error(
                value.span(),
                format!("{key}.{kind}"),
                format!(
                    "give one key source, not several ({})",
                    sources
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            (None, None, None)
        }
    };
    if let (Some(set), Some(algs)) = (&static_keys, &algorithms) {
        let families = set.families();
        for (i, alg) in algs.iter().enumerate() {
            if !families.contains(&alg.family()) {
                let span = f.algorithms.get_ref()[i].span();
                d.error(
                    span,
                    format!("{key}.algorithms[{i}]"),
                    format!("{alg:?} has no key of its kind in this provider's key source"),
                );
            }
        }
    }
    if let (Some(KeyConfig::MissingSecret { .. }), Some(algs)) = (&key_config, &algorithms) {
        if let Some(i) = algs
            .iter()
            .position(|a| a.family() != AlgorithmFamily::Hmac)
        {
            d.error(
                f.algorithms.get_ref()[i].span(),
                format!("{key}.algorithms[{i}]"),
                "a secret only verifies HS256, HS384 or HS512",
            );
        }
    }
    if let (Some(KeyConfig::JwksUrl(_)), Some(algs)) = (&key_config, &algorithms) {
        if let Some(i) = algs
            .iter()
            .position(|a| a.family() == AlgorithmFamily::Hmac)
        {
            d.error(
                f.algorithms.get_ref()[i].span(),
                format!("{key}.algorithms[{i}]"),
                "HMAC algorithms need secret_env or secret_file, not a remote key set",
            );
        }
    }

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
    let signer = match &algorithms {
        Some(algs) => {
            let result = provider::signer(
                algs,
                secret.as_deref(),
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

    let cookie = f.cookie.as_ref().and_then(|c| {
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
    });
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
    let cache_size = match &f.cache_size {
        None => 10_000,
        Some(v) if (0..=10_000_000).contains(v.get_ref()) => *v.get_ref() as usize,
        Some(v) => {
            d.error(
                v.span(),
                format!("{key}.cache_size"),
                "must be between 0 and 10000000",
            );
            0
        }
    };
    if d.errors.len() > before {
        return None;
    }
    let settings = ProviderSettings {
        issuer: f.issuer.get_ref().clone(),
        audiences,
        algorithms: algorithms?,
        key: key_config?,
        private_key: private_key.map(|(_, s)| s),
        leeway,
        cookie,
        forward_claims,
        strip_token: f.strip_token.unwrap_or(false),
        cache_size,
    };
    Some((settings, static_keys, signer))
}

fn algorithms(d: &mut Diagnostics, key: &str, f: &ProviderFile) -> Option<Vec<Algorithm>> {
    if f.algorithms.get_ref().is_empty() {
        d.error(
            f.algorithms.span(),
            format!("{key}.algorithms"),
            "needs at least one algorithm, e.g. [\"RS256\"]",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, a) in f.algorithms.get_ref().iter().enumerate() {
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

type Source = (Option<KeyConfig>, Option<KeySet>, Option<Vec<u8>>);

fn key_source(
    d: &mut Diagnostics,
    key: &str,
    kind: &str,
    value: &Text,
    f: &ProviderFile,
) -> Source {
    let k = format!("{key}.{kind}");
    let read = |d: &mut Diagnostics| {
        let path = crate::config::resolve(&d.source.path, value.get_ref());
        std::fs::read(&path)
            .map_err(|e| {
                d.error(
                    value.span(),
                    k.clone(),
                    format!("cannot read {}: {e}", path.display()),
                )
            })
            .ok()
    };
    let secret = |d: &mut Diagnostics, bytes: Vec<u8>| {
        if bytes.len() < MIN_SECRET_BYTES {
            d.error(
                value.span(),
                k.clone(),
                format!(
                    "the secret is {} bytes; HMAC secrets need at least {MIN_SECRET_BYTES}",
                    bytes.len()
                ),
            );
            return (None, None, None);
        }
        let set = KeySet::single(jsonwebtoken::DecodingKey::from_secret(&bytes));
        (
            Some(KeyConfig::Secret(Secret(bytes.clone()))),
            Some(set),
            Some(bytes),
        )
    };
    match kind {
        "secret_env" => match env_secret(value.get_ref()) {
            Some(s) => secret(d, s.into_bytes()),
            None => {
                tracing::warn!(
                    "{key}: environment variable {} is not set; every token for this provider is refused",
                    value.get_ref()
                );
                (
                    Some(KeyConfig::MissingSecret {
                        env: value.get_ref().clone(),
                    }),
                    None,
                    None,
                )
            }
        },
        "secret_file" => match read(d) {
            Some(mut bytes) => {
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                secret(d, bytes)
            }
            None => (None, None, None),
        },
        "public_key_file" => {
            let Some(bytes) = read(d) else {
                return (None, None, None);
            };
            match public_key_from_pem(&bytes) {
                Ok(k) => (
                    Some(KeyConfig::PublicKeyPem(Secret(bytes))),
                    Some(KeySet::single(k)),
                    None,
                ),
                Err(msg) => {
                    d.error(value.span(), k, msg);
                    (None, None, None)
                }
            }
        }
        "jwks_file" => {
            let Some(bytes) = read(d) else {
                return (None, None, None);
            };
            match KeySet::from_jwks(&bytes) {
                Ok((set, _)) if !set.is_empty() => (
                    Some(KeyConfig::JwksDocument(Secret(bytes))),
                    Some(set),
                    None,
                ),
                Ok(_) => {
                    d.error(value.span(), k, "the JWK set has no usable key");
                    (None, None, None)
                }
                Err(msg) => {
                    d.error(value.span(), k, msg);
                    (None, None, None)
                }
            }
        }
        _ => {
            let url = value.get_ref();
            let uri = url
                .parse::<Uri>()
                .ok()
                .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
            let Some(uri) = uri else {
                d.error(
                    value.span(),
                    k,
                    format!("bad URL \"{url}\": expected http(s)://host[:port]/path"),
                );
                return (None, None, None);
            };
            let dur = |d: &mut Diagnostics, v: &Option<Text>, name: &str, default: u64| {
                v.as_ref()
                    .and_then(|v| d.parse(v, format!("{key}.{name}"), parse_duration))
                    .unwrap_or(Duration::from_secs(default))
            };
            let settings = JwksSettings {
                url: uri,
                refresh: dur(d, &f.jwks_refresh, "jwks_refresh", 300),
                cooldown: dur(d, &f.jwks_cooldown, "jwks_cooldown", 30),
                timeout: dur(d, &f.jwks_timeout, "jwks_timeout", 5),
            };
            if settings.timeout.is_zero() {
                if let Some(t) = &f.jwks_timeout {
                    d.error(
                        t.span(),
                        format!("{key}.jwks_timeout"),
                        "must be more than 0",
                    );
                }
            }
            (Some(KeyConfig::JwksUrl(settings)), None, None)
        }
    }
}

/// Compiles a route's or BFF profile's `auth = {...}` against the compiled providers.
pub fn compile_rule(
    d: &mut Diagnostics,
    key: &str,
    rule: &Spanned<AuthRuleFile>,
    providers: &BTreeMap<Arc<str>, Arc<Provider>>,
) -> Option<AuthRule> {
    let before = d.errors.len();
    let span = rule.span();
    let r = rule.get_ref();
    let names: Vec<&Text> = match (&r.provider, &r.providers) {
        (Some(p), None) => vec![p],
        (None, Some(ps)) if !ps.get_ref().is_empty() => ps.get_ref().iter().collect(),
        (None, Some(ps)) => {
            d.error(
                ps.span(),
                format!("{key}.providers"),
                "needs at least one provider",
            );
            vec![]
        }
        (None, None) => {
            d.error(
                span.clone(),
                key,
                "needs `provider = \"NAME\"` or `providers = [...]`",
            );
            vec![]
        }
        (Some(p), Some(_)) => {
            d.error(
                p.span(),
                format!("{key}.provider"),
                "give `provider` or `providers`, not both",
            );
            vec![]
        }
    };
    let mut found = Vec::new();
    for n in names {
        match providers.get(n.get_ref().as_str()) {
            Some(p) => found.push(p.clone()),
            None => d.error(
                n.span(),
                key,
                format!("unknown auth provider `{}`", n.get_ref()),
            ),
        }
    }
    let mut scopes = Vec::new();
    for (i, s) in r.scopes.iter().enumerate() {
        if s.get_ref().is_empty() || s.get_ref().contains(' ') {
            d.error(
                s.span(),
                format!("{key}.scopes[{i}]"),
                "a scope is one non-empty word (list several scopes as separate items)",
            );
        } else {
            scopes.push(Box::from(s.get_ref().as_str()));
        }
    }
    let mut claims = Vec::new();
    for (name, value) in &r.claims {
        let k = format!("{key}.claims.{}", name.get_ref());
        let path = match ClaimPath::parse(name.get_ref()) {
            Ok(p) => p,
            Err(msg) => {
                d.error(name.span(), k, msg);
                continue;
            }
        };
        let want = match value.get_ref() {
            toml::Value::String(s) => Value::from(s.clone()),
            toml::Value::Integer(i) => Value::from(*i),
            toml::Value::Float(f) => Value::from(*f),
            toml::Value::Boolean(b) => Value::from(*b),
            _ => {
                d.error(
                    value.span(),
                    k,
                    "a claim condition is a string, number or boolean",
                );
                continue;
            }
        };
        claims.push((path, want));
    }
    if d.errors.len() > before {
        return None;
    }
    let mut cookies: Vec<Box<str>> = Vec::new();
    for p in &found {
        if let Some(c) = &p.settings.cookie {
            if !cookies.iter().any(|x| **x == **c) {
                cookies.push(c.as_str().into());
            }
        }
    }
    Some(AuthRule {
        providers: found.into_boxed_slice(),
        scopes: scopes.into_boxed_slice(),
        claims: claims.into_boxed_slice(),
        cookies: cookies.into_boxed_slice(),
    })
}
