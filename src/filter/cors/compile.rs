//! `[cors.NAME]` -> `Cors`: origin syntax, methods, header names, max age; `"*"` origins with
//! credentials are refused (browsers ignore such answers, so the policy could never work).

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use toml::Spanned;

use super::Cors;
use crate::config::Diagnostics;
use crate::config::file::Text;
use crate::config::file::edge::CorsFile;

/// Compiled policies by name.
pub type CorsPolicies = BTreeMap<Arc<str>, Arc<Cors>>;

/// Methods allowed when `methods` is absent.
const DEFAULT_METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::PUT,
    Method::PATCH,
    Method::POST,
    Method::DELETE,
];

/// Compiles every `[cors.NAME]`; a policy with errors is left out (and reported).
pub fn compile_policies(
    d: &mut Diagnostics,
    files: &BTreeMap<Spanned<String>, CorsFile>,
) -> CorsPolicies {
    let mut out = CorsPolicies::new();
    for (name, f) in files {
        let key = format!("cors.{}", name.get_ref());
        let before = d.errors.len();
        let policy = policy(d, &key, name.get_ref(), f);
        if d.errors.len() == before {
            out.insert(Arc::from(name.get_ref().as_str()), Arc::new(policy));
        }
    }
    out
}

fn policy(d: &mut Diagnostics, key: &str, name: &str, f: &CorsFile) -> Cors {
    let credentials = f.credentials.unwrap_or(false);
    let mut any_origin = false;
    let mut exact = Vec::new();
    let mut patterns = Vec::new();
    if f.origins.get_ref().is_empty() {
        d.error(
            f.origins.span(),
            format!("{key}.origins"),
            "list at least one origin (or \"*\")",
        );
    }
    for (i, o) in f.origins.get_ref().iter().enumerate() {
        let k = format!("{key}.origins[{i}]");
        let text = o.get_ref().to_ascii_lowercase();
        if text == "*" {
            if credentials {
                d.error(
                    o.span(),
                    k,
                    "origin \"*\" cannot be used with `credentials = true` (browsers refuse it); list the origins",
                );
            }
            any_origin = true;
            continue;
        }
        match origin(&text) {
            Ok(Some(p)) => patterns.push(p),
            Ok(None) => exact.push(Box::<str>::from(text)),
            Err(msg) => d.error(o.span(), k, msg),
        }
    }
    let methods: Vec<Method> = match &f.methods {
        Some(list) => list
            .get_ref()
            .iter()
            .enumerate()
            .filter_map(|(i, m)| d.method(m, format!("{key}.methods[{i}]")))
            .collect(),
        None => DEFAULT_METHODS.to_vec(),
    };
    let (any_header, headers) = header_names(d, f.headers.as_ref(), &format!("{key}.headers"));
    let (_, expose) = header_names(
        d,
        f.expose_headers.as_ref(),
        &format!("{key}.expose_headers"),
    );
    let max_age = f.max_age.as_ref().and_then(|v| {
        d.parse(
            v,
            format!("{key}.max_age"),
            crate::config::units::parse_duration,
        )
    });
    Cors {
        name: Arc::from(name),
        any_origin,
        exact: exact.into(),
        patterns: patterns.into(),
        methods_value: joined(methods.iter().map(Method::as_str)),
        methods: methods.into(),
        any_header,
        headers_value: (!headers.is_empty()).then(|| joined(headers.iter().map(|h| h.as_str()))),
        headers: headers.into(),
        expose: (!expose.is_empty()).then(|| joined(expose.iter().map(|h| h.as_str()))),
        credentials,
        max_age: max_age.map(|d| HeaderValue::from(d.as_secs())),
    }
}

/// An origin pattern's halves: (`scheme://`, `.suffix`).
type Pattern = (Box<str>, Box<str>);

/// `scheme://host[:port]` → `None` (exact), `scheme://*.rest` → the pattern's two halves.
fn origin(text: &str) -> Result<Option<Pattern>, String> {
    let bad = || {
        format!(
            "bad origin \"{text}\": expected scheme://host[:port] (no path), optionally with `*.` as the first label"
        )
    };
    let (scheme, host) = text.split_once("://").ok_or_else(bad)?;
    if scheme.is_empty() || host.is_empty() || host.contains('/') {
        return Err(bad());
    }
    match host.strip_prefix("*.") {
        Some(rest) if !rest.is_empty() && !rest.contains('*') => Ok(Some((
            format!("{scheme}://").into(),
            format!(".{rest}").into(),
        ))),
        Some(_) => Err(bad()),
        None if host.contains('*') => Err(bad()),
        None => Ok(None),
    }
}

/// A list of header names; `"*"` means any.
fn header_names(
    d: &mut Diagnostics,
    list: Option<&Spanned<Vec<Text>>>,
    key: &str,
) -> (bool, Vec<HeaderName>) {
    let mut any = false;
    let mut out = Vec::new();
    for (i, h) in list
        .map(|l| l.get_ref().as_slice())
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        if h.get_ref() == "*" {
            any = true;
            continue;
        }
        if let Some(n) = d.parse(h, format!("{key}[{i}]"), |s| {
            HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("bad header name \"{s}\""))
        }) {
            out.push(n);
        }
    }
    (any, out)
}

fn joined<'a>(items: impl Iterator<Item = &'a str>) -> HeaderValue {
    let s: Vec<&str> = items.collect();
    HeaderValue::from_str(&s.join(", ")).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn origin_syntax() {
        assert_eq!(origin("https://app.example.com"), Ok(None));
        assert_eq!(origin("http://localhost:3000"), Ok(None));
        assert!(matches!(origin("https://*.example.com"), Ok(Some(_))));
        assert!(origin("app.example.com").is_err());
        assert!(origin("https://app.example.com/path").is_err());
        assert!(origin("https://a.*.example.com").is_err());
        assert!(origin("https://*.").is_err());
    }
}
