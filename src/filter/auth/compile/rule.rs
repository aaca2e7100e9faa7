//! A route's or BFF profile's `auth = { provider(s), scopes, claims }`, against the compiled
//! providers.

use std::sync::Arc;

use serde_json::Value;
use toml::Spanned;

use crate::config::Diagnostics;
use crate::config::file::Text;
use crate::config::file::auth::AuthRuleFile;
use crate::config::shape::suggestion;
use crate::filter::auth::AuthRule;
use crate::filter::auth::api_key::ApiKeyProvider;
use crate::filter::auth::claims::ClaimPath;
use crate::filter::auth::provider::Provider;

/// Compiles a route's or BFF profile's `auth = {...}` against the compiled providers.
pub fn compile_rule(
    d: &mut Diagnostics,
    key: &str,
    rule: &Spanned<AuthRuleFile>,
    cx: crate::filter::GuardContext<'_>,
) -> Option<AuthRule> {
    let before = d.errors.len();
    let r = rule.get_ref();
    let (found, api_keys) = providers_named(d, key, rule, cx);
    let scopes = scopes(d, key, r);
    let claims = claim_conditions(d, key, r);
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
        api_keys: api_keys.into_boxed_slice(),
        scopes: scopes.into_boxed_slice(),
        claims: claims.into_boxed_slice(),
        cookies: cookies.into_boxed_slice(),
    })
}

/// `provider = "NAME"` or `providers = [...]` (either passes), each a compiled provider: the
/// JWT ones and the API-key ones.
fn providers_named(
    d: &mut Diagnostics,
    key: &str,
    rule: &Spanned<AuthRuleFile>,
    cx: crate::filter::GuardContext<'_>,
) -> (Vec<Arc<Provider>>, Vec<Arc<ApiKeyProvider>>) {
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
    let mut keys = Vec::new();
    for n in names {
        let name = n.get_ref().as_str();
        if let Some(p) = cx.auth.providers.get(name) {
            found.push(p.clone());
        } else if let Some(p) = cx.auth.api_keys.get(name) {
            keys.push(p.clone());
        } else if !cx.declared_providers.contains(&name) {
            // A declared provider that failed to compile was reported at its definition.
            let hint = suggestion(name, cx.declared_providers.iter().copied());
            d.error(
                n.span(),
                key,
                format!("unknown auth provider `{name}`{hint}"),
            );
        }
    }
    (found, keys)
}

/// `scopes = [...]`: each one word, all required.
fn scopes(d: &mut Diagnostics, key: &str, r: &AuthRuleFile) -> Vec<Box<str>> {
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
    scopes
}

/// `claims = { name = value }`: exact string, number or boolean matches, all required.
fn claim_conditions(d: &mut Diagnostics, key: &str, r: &AuthRuleFile) -> Vec<(ClaimPath, Value)> {
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
    claims
}
