//! `[auth.providers.NAME]` with `kind = "api_key"`: the key file (problems reported at their
//! line in that file), the key header, the optional query parameter, the consumer header.

use std::sync::Arc;

use http::HeaderName;

use super::RESERVED_HEADERS;
use crate::config::diag::{ConfigError, Diagnostics};
use crate::config::file::Text;
use crate::config::file::auth::ProviderFile;
use crate::filter::auth::api_key::{ApiKeyProvider, keys_file};

/// Compiles one API-key provider; `None` (and errors) when something is wrong.
pub(super) fn compile(
    d: &mut Diagnostics,
    key: &str,
    name: &Text,
    f: &ProviderFile,
) -> Option<ApiKeyProvider> {
    let before = d.errors.len();
    jwt_keys_absent(d, key, f);
    let header = match &f.header {
        Some(h) => header_name(d, &format!("{key}.header"), h),
        None => Some(HeaderName::from_static("x-api-key")),
    };
    let forward_consumer = f
        .forward_consumer
        .as_ref()
        .and_then(|h| header_name(d, &format!("{key}.forward_consumer"), h));
    let query = f.query.as_ref().and_then(|q| {
        let ok = !q.get_ref().is_empty()
            && q.get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            d.error(
                q.span(),
                format!("{key}.query"),
                format!("bad query parameter name \"{}\"", q.get_ref()),
            );
        }
        ok.then(|| Box::<str>::from(q.get_ref().as_str()))
    });
    let entries = match &f.keys_file {
        None => {
            d.error(
                name.span(),
                key,
                "an API-key provider needs `keys_file = \"...\"`",
            );
            None
        }
        Some(path) => read_keys(d, &format!("{key}.keys_file"), path),
    };
    if d.errors.len() > before {
        return None;
    }
    Some(ApiKeyProvider::new(
        Arc::from(name.get_ref().as_str()),
        header?,
        query,
        forward_consumer,
        entries?,
    ))
}

/// Reads and parses the key file; problems point into the key file itself.
fn read_keys(
    d: &mut Diagnostics,
    key: &str,
    path: &Text,
) -> Option<Vec<(crate::filter::auth::api_key::KeyHash, Arc<str>)>> {
    let file = crate::config::resolve(&d.source.path, path.get_ref());
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            d.error(
                path.span(),
                key,
                format!("cannot read {}: {e}", file.display()),
            );
            return None;
        }
    };
    match keys_file::parse(&text) {
        Ok(entries) => Some(entries),
        Err(errors) => {
            for e in errors {
                d.errors.push(ConfigError {
                    file: file.clone(),
                    line: e.line,
                    col: e.col,
                    key: key.to_string(),
                    message: e.message,
                });
            }
            None
        }
    }
}

fn header_name(d: &mut Diagnostics, key: &str, h: &Text) -> Option<HeaderName> {
    let lower = h.get_ref().to_ascii_lowercase();
    match HeaderName::from_bytes(lower.as_bytes()) {
        Ok(_) if RESERVED_HEADERS.contains(&lower.as_str()) => {
            d.error(h.span(), key, format!("`{lower}` cannot be used here"));
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            d.error(
                h.span(),
                key,
                format!("bad header name \"{}\"", h.get_ref()),
            );
            None
        }
    }
}

/// JWT-only keys on an API-key provider are a mistake: say so instead of ignoring them.
fn jwt_keys_absent(d: &mut Diagnostics, key: &str, f: &ProviderFile) {
    let spans = [
        ("issuer", f.issuer.as_ref().map(|v| v.span())),
        ("audiences", f.audiences.as_ref().map(|v| v.span())),
        ("algorithms", f.algorithms.as_ref().map(|v| v.span())),
        ("secret_env", f.secret_env.as_ref().map(|v| v.span())),
        ("secret_file", f.secret_file.as_ref().map(|v| v.span())),
        (
            "public_key_file",
            f.public_key_file.as_ref().map(|v| v.span()),
        ),
        ("jwks_file", f.jwks_file.as_ref().map(|v| v.span())),
        ("jwks_url", f.jwks_url.as_ref().map(|v| v.span())),
        ("cookie", f.cookie.as_ref().map(|v| v.span())),
    ];
    for (k, span) in spans {
        if let Some(span) = span {
            d.error(
                span,
                format!("{key}.{k}"),
                format!("`{k}` is a JWT key; an API-key provider does not read it"),
            );
        }
    }
}

/// API-key keys on a JWT provider.
pub(super) fn api_key_keys_absent(d: &mut Diagnostics, key: &str, f: &ProviderFile) {
    let spans = [
        ("keys_file", f.keys_file.as_ref()),
        ("header", f.header.as_ref()),
        ("query", f.query.as_ref()),
        ("forward_consumer", f.forward_consumer.as_ref()),
    ];
    for (k, v) in spans {
        if let Some(v) = v {
            d.error(
                v.span(),
                format!("{key}.{k}"),
                format!("`{k}` belongs to `kind = \"api_key\"` providers"),
            );
        }
    }
}
