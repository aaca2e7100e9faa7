//! A JWT provider's key source: exactly one of `secret_env`, `secret_file`,
//! `public_key_file`, `jwks_file`, `jwks_url`, read and checked against the allowed algorithms.

use std::time::Duration;

use http::Uri;
use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::{MIN_SECRET_BYTES, env_secret};
use crate::config::Diagnostics;
use crate::config::file::Text;
use crate::config::file::auth::ProviderFile;
use crate::config::units::parse_duration;
use crate::filter::auth::jwks::JwksSettings;
use crate::filter::auth::keys::{KeySet, public_key_from_pem};
use crate::filter::auth::provider::{KeyConfig, Secret};

/// Reads the provider's one key source; none or several is an error.
/// `at` is where a missing key source is reported (the provider's `issuer`).
pub(super) fn select(
    d: &mut Diagnostics,
    key: &str,
    f: &ProviderFile,
    at: std::ops::Range<usize>,
) -> Source {
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
    match sources.as_slice() {
        [] => {
            d.error(
                at,
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
    }
}

/// Every allowed algorithm needs a key of its family; a missing `secret_env` can only verify
/// HMAC, and a remote key set never HMAC (a shared secret is never published).
pub(super) fn check_algorithms(
    d: &mut Diagnostics,
    key: &str,
    listed: &[Text],
    algs: &[Algorithm],
    key_config: Option<&KeyConfig>,
    static_keys: Option<&KeySet>,
) {
    if let Some(set) = static_keys {
        let families = set.families();
        for (i, alg) in algs.iter().enumerate() {
            if !families.contains(&alg.family()) {
                let span = listed[i].span();
                d.error(
                    span,
                    format!("{key}.algorithms[{i}]"),
                    format!("{alg:?} has no key of its kind in this provider's key source"),
                );
            }
        }
    }
    if let Some(KeyConfig::MissingSecret { .. }) = key_config {
        if let Some(i) = algs
            .iter()
            .position(|a| a.family() != AlgorithmFamily::Hmac)
        {
            d.error(
                listed[i].span(),
                format!("{key}.algorithms[{i}]"),
                "a secret only verifies HS256, HS384 or HS512",
            );
        }
    }
    if let Some(KeyConfig::JwksUrl(_)) = key_config {
        if let Some(i) = algs
            .iter()
            .position(|a| a.family() == AlgorithmFamily::Hmac)
        {
            d.error(
                listed[i].span(),
                format!("{key}.algorithms[{i}]"),
                "HMAC algorithms need secret_env or secret_file, not a remote key set",
            );
        }
    }
}

/// What a key source yields: the config kept for comparison on reload, the keys known now
/// (none for a remote JWKS until fetched), and an HMAC secret for signing.
pub(super) type Source = (Option<KeyConfig>, Option<KeySet>, Option<Vec<u8>>);

fn key_source(
    d: &mut Diagnostics,
    key: &str,
    kind: &str,
    value: &Text,
    f: &ProviderFile,
) -> Source {
    let k = format!("{key}.{kind}");
    match kind {
        "secret_env" => match env_secret(value.get_ref()) {
            Some(s) => secret(d, &k, value, s.into_bytes()),
            None => {
                // Not an error: the config stays valid (and loadable elsewhere), but nothing
                // can be verified until the variable is set and the config reloaded. The
                // warning is the load's (`runtime::warnings`), with file:line:col.
                let env = value.get_ref().clone();
                (Some(KeyConfig::MissingSecret { env }), None, None)
            }
        },
        "secret_file" => match read(d, &k, value) {
            Some(mut bytes) => {
                // A file written by `echo` ends in a newline that is not part of the secret.
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                secret(d, &k, value, bytes)
            }
            None => (None, None, None),
        },
        "public_key_file" => read(d, &k, value).map_or((None, None, None), |bytes| {
            match public_key_from_pem(&bytes) {
                Ok(pk) => (
                    Some(KeyConfig::PublicKeyPem(Secret(bytes))),
                    Some(KeySet::single(pk)),
                    None,
                ),
                Err(msg) => {
                    d.error(value.span(), k, msg);
                    (None, None, None)
                }
            }
        }),
        "jwks_file" => read(d, &k, value).map_or((None, None, None), |bytes| {
            jwks_document(d, &k, value, bytes)
        }),
        _ => jwks_url(d, key, &k, value, f),
    }
}

/// Reads a key file named by `value` (relative to the config file).
fn read(d: &mut Diagnostics, k: &str, value: &Text) -> Option<Vec<u8>> {
    let path = crate::config::resolve(&d.source.path, value.get_ref());
    std::fs::read(&path)
        .map_err(|e| {
            d.error(
                value.span(),
                k,
                format!("cannot read {}: {e}", path.display()),
            )
        })
        .ok()
}

/// An HMAC secret: at least [`MIN_SECRET_BYTES`] long.
fn secret(d: &mut Diagnostics, k: &str, value: &Text, bytes: Vec<u8>) -> Source {
    if bytes.len() < MIN_SECRET_BYTES {
        d.error(
            value.span(),
            k,
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
}

/// A JWK set read from a file: at least one usable key.
fn jwks_document(d: &mut Diagnostics, k: &str, value: &Text, bytes: Vec<u8>) -> Source {
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

/// `jwks_url`: fetched in the background (refresh, cooldown on unknown `kid`, timeout).
fn jwks_url(d: &mut Diagnostics, key: &str, k: &str, value: &Text, f: &ProviderFile) -> Source {
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
