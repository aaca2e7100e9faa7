//! Reading verified claims: dotted claim paths, scopes (`scope` / `scp`), claim conditions and
//! the text a claim is forwarded or keyed as.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Value};

/// A claim name such as `sub`, or a nested path such as `org.id`. A claim literally named
/// `org.id` wins over the nested path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    full: Box<str>,
    segments: Box<[Box<str>]>,
}

impl ClaimPath {
    /// Parses a path; empty names and empty segments are refused.
    pub fn parse(text: &str) -> Result<ClaimPath, String> {
        if text.is_empty() || text.split('.').any(str::is_empty) {
            return Err(format!(
                "bad claim name \"{text}\": expected a name such as \"sub\" or a path such as \"org.id\""
            ));
        }
        Ok(ClaimPath {
            full: text.into(),
            segments: text.split('.').map(Box::from).collect(),
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The claim's value, if present.
    pub fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        if let Some(v) = claims.get(&*self.full) {
            return Some(v);
        }
        if self.segments.len() < 2 {
            return None;
        }
        let mut cur = claims.get(&*self.segments[0])?;
        for seg in &self.segments[1..] {
            cur = cur.as_object()?.get(&**seg)?;
        }
        Some(cur)
    }
}

/// A claim as text: strings as they are, numbers and booleans printed, arrays of those joined
/// with commas. Objects and null have no text form.
pub fn claim_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Array(items) => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                let text = match item {
                    Value::Array(_) | Value::Object(_) | Value::Null => return None,
                    other => claim_text(other)?,
                };
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&text);
            }
            Some(Cow::Owned(out))
        }
        Value::Null | Value::Object(_) => None,
    }
}

/// The scopes a token grants: the words of `scope` (space-separated), then `scp` (an array of
/// strings, or space-separated). Taken once, when the token is verified.
pub fn granted_scopes(claims: &Map<String, Value>) -> Arc<[Box<str>]> {
    let words = |v: &Value, out: &mut Vec<Box<str>>| {
        if let Some(s) = v.as_str() {
            out.extend(s.split(' ').map(Box::from));
        }
    };
    let mut out = Vec::new();
    if let Some(v) = claims.get("scope") {
        words(v, &mut out);
    }
    match claims.get("scp") {
        Some(Value::Array(items)) => {
            out.extend(items.iter().filter_map(Value::as_str).map(Box::from));
        }
        Some(v) => words(v, &mut out),
        None => {}
    }
    out.into()
}

/// Whether a claim value satisfies a condition: equality, or membership for arrays. Numbers
/// compare by value (1 equals 1.0).
pub fn claim_matches(actual: &Value, want: &Value) -> bool {
    match actual {
        Value::Array(items) => items.iter().any(|i| same(i, want)),
        other => same(other, want),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn paths_literal_first_then_nested() {
        let c = map(json!({"sub": "u1", "org": {"id": "acme"}, "a.b": 1, "a": {"b": 2}}));
        let p = |s| ClaimPath::parse(s).unwrap();
        assert_eq!(p("sub").lookup(&c), Some(&json!("u1")));
        assert_eq!(p("org.id").lookup(&c), Some(&json!("acme")));
        assert_eq!(p("a.b").lookup(&c), Some(&json!(1)));
        assert_eq!(p("org.nope").lookup(&c), None);
        assert!(ClaimPath::parse("a..b").is_err());
        assert!(ClaimPath::parse("").is_err());
    }

    #[test]
    fn text_forms() {
        assert_eq!(claim_text(&json!("x")).unwrap(), "x");
        assert_eq!(claim_text(&json!(42)).unwrap(), "42");
        assert_eq!(claim_text(&json!(["a", "b", 3])).unwrap(), "a,b,3");
        assert!(claim_text(&json!({"a": 1})).is_none());
        assert!(claim_text(&json!([{"a": 1}])).is_none());
    }

    #[test]
    fn scopes_from_scope_or_scp() {
        let has = |c: serde_json::Value, scope: &str| {
            granted_scopes(&map(c)).iter().any(|s| &**s == scope)
        };
        assert!(has(
            json!({"scope": "users:read orders:read"}),
            "users:read"
        ));
        assert!(has(
            json!({"scope": "users:read orders:read"}),
            "orders:read"
        ));
        assert!(!has(json!({"scope": "users:read orders:read"}), "users"));
        assert!(has(json!({"scp": ["users:write"]}), "users:write"));
        assert!(!has(json!({"scp": ["users:write"]}), "users:read"));
        assert!(has(json!({"scp": "a b"}), "b"));
        assert!(has(json!({"scope": "a", "scp": ["b"]}), "b"));
        assert!(!has(json!({"scope": 1}), "1"));
        assert!(!has(json!({"scp": [1, {"x": "y"}]}), "1"));
        assert!(granted_scopes(&map(json!({}))).is_empty());
    }

    #[test]
    fn conditions() {
        assert!(claim_matches(&json!("admin"), &json!("admin")));
        assert!(claim_matches(&json!(["user", "admin"]), &json!("admin")));
        assert!(!claim_matches(&json!("user"), &json!("admin")));
        assert!(claim_matches(&json!(3), &json!(3.0)));
        assert!(!claim_matches(&json!("true"), &json!(true)));
    }
}
