//! `[[endpoints.steps]]` of a saga endpoint -> [`Saga`]: templates in the BFF template
//! language (step names are its sources), upstreams, compensations. A step may read only
//! earlier steps; a compensation only its own step and earlier ones.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use toml::Spanned;

use super::file::{CompensateFile, StepFile};
use super::{Call, Compensation, Saga, Step};
use crate::bff::compile::path_template;
use crate::bff::json_template::JsonTemplate;
use crate::bff::shape::Shape;
use crate::bff::template::{RESERVED_SOURCES, Scope, Source, Var};
use crate::config::Diagnostics;
use crate::config::file::Text;
use crate::config::units::parse_duration;
use crate::upstream::Upstream;

const DEFAULT_ATTEMPTS: i64 = 5;
const DEFAULT_BACKOFF: Duration = Duration::from_millis(100);

/// What steps are compiled against.
pub struct Context<'a> {
    /// Compiled upstreams.
    pub upstreams: &'a BTreeMap<Arc<str>, Arc<Upstream>>,
    /// Every upstream name declared in gateway.toml.
    pub declared: &'a [&'a str],
    /// Capture names of the endpoint path.
    pub captures: &'a [Box<str>],
    /// `[saga]` of gateway.toml (a saga endpoint needs its log).
    pub store: Option<&'a Arc<super::store::Store>>,
    /// Where `saga = true` is written (for the missing `[saga]` error).
    pub flag: std::ops::Range<usize>,
}

/// Compiles the steps of endpoint `key` (e.g. `endpoints[0]`); `None` after an error.
pub fn compile(
    d: &mut Diagnostics,
    steps: &[StepFile],
    key: &str,
    cx: &Context<'_>,
) -> Option<Saga> {
    let before = d.errors.len();
    if cx.store.is_none() {
        d.error(
            cx.flag.clone(),
            format!("{key}.saga"),
            "a saga endpoint needs `[saga] dir` in gateway.toml (the durable saga log)",
        );
    }
    let names = step_names(d, steps, key);
    let scope = Scope {
        captures: cx.captures,
        parts: &names,
    };
    let mut out = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        out.extend(step(d, s, i, &format!("{key}.steps[{i}]"), &scope, cx));
    }
    let store = cx.store?.clone();
    if d.errors.len() > before {
        return None;
    }
    let reads_body = out.iter().any(|s: &Step| {
        s.call
            .vars()
            .chain(s.compensate.iter().flat_map(|c| c.call.vars()))
            .any(|v| v.source == Source::Body)
    });
    Some(Saga {
        steps: out.into(),
        reads_body,
        store,
    })
}

fn step_names<'f>(d: &mut Diagnostics, steps: &'f [StepFile], key: &str) -> Vec<&'f str> {
    let mut names: Vec<&str> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let n = s.name.get_ref().as_str();
        let k = format!("{key}.steps[{i}].name");
        let token = !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !token {
            d.error(
                s.name.span(),
                k,
                format!("bad step name \"{n}\": use letters, digits, `-` or `_`"),
            );
        } else if RESERVED_SOURCES.contains(&n) || n.starts_with('_') {
            d.error(s.name.span(), k, format!("step name \"{n}\" is reserved (claims, path, query, header, body and names starting with `_`)"));
        } else if names.contains(&n) {
            d.error(s.name.span(), k, format!("duplicate step name `{n}`"));
        }
        names.push(n);
    }
    names
}

fn step(
    d: &mut Diagnostics,
    s: &StepFile,
    i: usize,
    key: &str,
    scope: &Scope<'_>,
    cx: &Context<'_>,
) -> Option<Step> {
    let before = d.errors.len();
    let upstream = upstream(d, &s.upstream, &format!("{key}.upstream"), cx);
    let method = method(d, &s.method, &format!("{key}.method"), Method::POST);
    let path = path_template(d, &s.path, &format!("{key}.path"), scope);
    let body = body(d, &s.body, &format!("{key}.body"), scope);
    let timeout = d.positive_duration_or(
        &s.timeout,
        &format!("{key}.timeout"),
        upstream
            .as_ref()
            .map_or(Duration::from_secs(1), |u| u.settings.timeout),
    );
    let shape = s.fields.as_ref().and_then(|f| {
        let list: Vec<&str> = f.iter().map(|t| t.get_ref().as_str()).collect();
        let span = f.first().map_or(s.name.span(), |t| t.span());
        Shape::new(Some(&list), None, &[])
            .map_err(|msg| d.error(span, format!("{key}.fields"), msg))
            .ok()
    });
    let compensate = s
        .compensate
        .as_ref()
        .and_then(|c| compensation(d, c, key, upstream.as_ref(), timeout, scope, cx));
    if d.errors.len() > before {
        return None;
    }
    let call = Call {
        upstream: upstream?,
        method,
        path: path?,
        body,
    };
    // A step runs after the ones before it: reading itself or a later step is a mistake.
    if let Some(j) = call.vars().find_map(|v| step_index(v).filter(|&j| j >= i)) {
        d.error(
            s.path.span(),
            format!("{key}.path"),
            format!("step `{}` reads step `{}`, which has not run yet (a step may read only earlier steps)", scope.parts[i], scope.parts[j]),
        );
        return None;
    }
    if let Some(c) = &compensate {
        if let Some(j) = c.call.vars().find_map(|v| step_index(v).filter(|&j| j > i)) {
            let span = s.compensate.as_ref().map_or(s.name.span(), |c| c.span());
            d.error(
                span,
                format!("{key}.compensate"),
                format!("the compensation of step `{}` reads the later step `{}` (a compensation may read only its own step and earlier ones)", scope.parts[i], scope.parts[j]),
            );
            return None;
        }
    }
    Some(Step {
        name: Arc::from(s.name.get_ref().as_str()),
        call,
        timeout,
        shape,
        compensate,
    })
}

fn step_index(v: &Var) -> Option<usize> {
    match v.source {
        Source::Part(j) => Some(j),
        _ => None,
    }
}

fn compensation(
    d: &mut Diagnostics,
    c: &Spanned<CompensateFile>,
    key: &str,
    step_upstream: Option<&Arc<Upstream>>,
    timeout: Duration,
    scope: &Scope<'_>,
    cx: &Context<'_>,
) -> Option<Compensation> {
    let key = format!("{key}.compensate");
    let c = c.get_ref();
    let upstream = match &c.upstream {
        Some(u) => upstream(d, u, &format!("{key}.upstream"), cx),
        None => step_upstream.cloned(),
    };
    let method = method(d, &c.method, &format!("{key}.method"), Method::DELETE);
    let path = path_template(d, &c.path, &format!("{key}.path"), scope);
    let body = body(d, &c.body, &format!("{key}.body"), scope);
    let attempts = match &c.attempts {
        None => DEFAULT_ATTEMPTS,
        Some(a) if (1..=100).contains(a.get_ref()) => *a.get_ref(),
        Some(a) => {
            d.error(
                a.span(),
                format!("{key}.attempts"),
                format!("must be between 1 and 100, got {}", a.get_ref()),
            );
            DEFAULT_ATTEMPTS
        }
    };
    let backoff = c
        .backoff
        .as_ref()
        .and_then(|b| d.parse(b, format!("{key}.backoff"), parse_duration))
        .unwrap_or(DEFAULT_BACKOFF);
    Some(Compensation {
        call: Call {
            upstream: upstream?,
            method,
            path: path?,
            body,
        },
        attempts: attempts as u32,
        backoff,
        timeout,
    })
}

fn upstream(
    d: &mut Diagnostics,
    name: &Text,
    key: &str,
    cx: &Context<'_>,
) -> Option<Arc<Upstream>> {
    let n = name.get_ref().as_str();
    let found = cx.upstreams.get(n).cloned();
    if found.is_none() && !cx.declared.contains(&n) {
        d.error(
            name.span(),
            key,
            format!(
                "unknown upstream `{n}`{} (upstreams in gateway.toml: {})",
                crate::config::shape::suggestion(n, cx.declared.iter().copied()),
                if cx.declared.is_empty() {
                    "none".to_string()
                } else {
                    cx.declared.join(", ")
                }
            ),
        );
    }
    found
}

fn method(d: &mut Diagnostics, v: &Option<Text>, key: &str, default: Method) -> Method {
    let Some(t) = v else { return default };
    match d.method(t, key) {
        Some(m) if m == Method::CONNECT || m == Method::TRACE => {
            d.error(
                t.span(),
                key,
                format!("method {m} is not allowed for a saga call"),
            );
            default
        }
        Some(m) => m,
        None => default,
    }
}

fn body(
    d: &mut Diagnostics,
    b: &Option<Spanned<toml::Value>>,
    key: &str,
    scope: &Scope<'_>,
) -> Option<JsonTemplate> {
    let b = b.as_ref()?;
    // A body given as a string is JSON text whose strings are templates (`'{"sku": "{body.sku}"}'`
    // in the docs): parse it into a TOML-like value first.
    let value = match b.get_ref() {
        toml::Value::String(s) if s.trim_start().starts_with(['{', '[']) => {
            match json_text_to_toml(s) {
                Ok(v) => v,
                Err(msg) => {
                    d.error(b.span(), key, msg);
                    return None;
                }
            }
        }
        other => other.clone(),
    };
    JsonTemplate::compile(&value, scope)
        .map_err(|msg| d.error(b.span(), key, msg))
        .ok()
}

/// JSON text with template placeholders (`{"qty": {body.qty}}`): a placeholder outside a
/// string is quoted first so the text parses, then converted to a TOML value whose strings
/// are templates (a string that is exactly one placeholder keeps the JSON value's type).
fn json_text_to_toml(text: &str) -> Result<toml::Value, String> {
    let mut quoted = String::with_capacity(text.len() + 8);
    let mut in_str = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_str {
            quoted.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                quoted.push(c);
            }
            // `{` followed by a name start is a placeholder, not an object.
            '{' if chars.peek().is_some_and(|n| n.is_ascii_alphabetic()) => {
                quoted.push_str("\"{");
                for n in chars.by_ref() {
                    quoted.push(n);
                    if n == '}' {
                        break;
                    }
                }
                quoted.push('"');
            }
            _ => quoted.push(c),
        }
    }
    let json: serde_json::Value =
        serde_json::from_str(&quoted).map_err(|e| format!("body is not JSON: {e}"))?;
    Ok(json_to_toml(&json))
}

fn json_to_toml(v: &serde_json::Value) -> toml::Value {
    use serde_json::Value as J;
    match v {
        J::Null => toml::Value::String(String::new()),
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => n
            .as_i64()
            .map(toml::Value::Integer)
            .unwrap_or_else(|| toml::Value::Float(n.as_f64().unwrap_or(0.0))),
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(a) => toml::Value::Array(a.iter().map(json_to_toml).collect()),
        J::Object(m) => toml::Value::Table(
            m.iter()
                .map(|(k, v)| (k.clone(), json_to_toml(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_bodies_with_bare_placeholders_parse() {
        let v = json_text_to_toml(r#"{"sku": "{body.sku}", "qty": {body.qty}, "n": 1}"#).unwrap();
        let t = v.as_table().unwrap();
        assert_eq!(t["sku"].as_str(), Some("{body.sku}"));
        assert_eq!(t["qty"].as_str(), Some("{body.qty}"));
        assert_eq!(t["n"].as_integer(), Some(1));
        assert!(json_text_to_toml("[1, 2").is_err());
    }
}
