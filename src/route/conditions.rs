//! A/B match conditions beside `headers`: cookies, query parameters and verified claims.
//!
//! Cookie and query conditions are read by the route table like header conditions. Claim
//! conditions need the route's token verified, so [`find`] runs the table lookup, and when the
//! route it finds has claim conditions, verifies the token with that route's providers (no
//! request edits; the guards phase later authenticates again from the token cache): missing,
//! invalid or non-matching claims make the lookup go on to the next route in the same
//! precedence order, exactly as a failed header condition would. Claims forged in request
//! headers are never read: conditions see only the verified token's claims.

pub mod compile;

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderMap, Method, Uri};
use serde_json::{Map, Value};

use super::{Route, RouteTable};
use crate::error::GatewayError;
use crate::filter::auth::claims::{ClaimPath, claim_text};

/// What a condition asks of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// `"*"`: present with any value.
    Present,
    /// This exact string.
    Exact(Box<str>),
}

impl Want {
    fn takes(&self, value: &str) -> bool {
        match self {
            Want::Present => true,
            Want::Exact(want) => **want == *value,
        }
    }
}

/// A route's cookie, query and claim conditions (all must hold).
#[derive(Debug, Default)]
pub struct Conditions {
    /// Cookie name → wanted value.
    pub cookies: Box<[(Box<str>, Want)]>,
    /// Query parameter name (decoded) → wanted value (decoded).
    pub query: Box<[(Box<str>, Want)]>,
    /// Claim path → wanted text.
    pub claims: Box<[(ClaimPath, Want)]>,
}

impl Conditions {
    /// Whether the cookie and query conditions hold (claims are checked by [`find`]).
    pub fn takes(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        self.cookies.iter().all(|(name, want)| {
            crate::filter::auth::token::cookie(headers, name).is_some_and(|v| want.takes(v))
        }) && self
            .query
            .iter()
            .all(|(name, want)| query_values(query, name).any(|v| want.takes(&v)))
    }

    /// Whether verified `claims` satisfy every claim condition. A claim holding an array
    /// matches when any element does.
    pub fn claims_hold(&self, claims: &Map<String, Value>) -> bool {
        self.claims.iter().all(|(path, want)| {
            let Some(value) = path.lookup(claims) else {
                return false;
            };
            match value {
                Value::Array(items) => items.iter().filter_map(claim_text).any(|t| want.takes(&t)),
                other => claim_text(other).is_some_and(|t| want.takes(&t)),
            }
        })
    }
}

/// Decoded values of query parameter `name` (`+` is a space, `%XX` decoded).
fn query_values<'q>(query: Option<&'q str>, name: &'q str) -> impl Iterator<Item = Cow<'q, str>> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .filter_map(move |kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k) == name).then(|| decode(v))
        })
}

fn decode(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return Cow::Borrowed(text);
    }
    let spaced = text.replace('+', " ");
    Cow::Owned(
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Finds the route for a request; candidates with claim conditions are taken only when the
/// request carries a valid token for that route and its claims match (else the lookup falls
/// through to the next candidate). Without claim routes this is one table lookup.
pub async fn find<'t>(
    table: &'t RouteTable,
    host: Option<&str>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<&'t Arc<Route>, GatewayError> {
    let (path, query) = (uri.path(), uri.query());
    if !table.has_claim_routes() {
        return table.find(host, method, path, query, headers);
    }
    // Boxed: a token check may fetch keys, and that state stays out of plain lookups.
    Box::pin(find_by_claims(table, host, method, uri, headers)).await
}

/// [`find`] with claim routes in the table.
async fn find_by_claims<'t>(
    table: &'t RouteTable,
    host: Option<&str>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<&'t Arc<Route>, GatewayError> {
    let (path, query) = (uri.path(), uri.query());
    let mut skipped: Vec<&Arc<Route>> = Vec::new();
    loop {
        let route = table.find_skipping(host, method, path, query, headers, &skipped)?;
        let Some(cond) = route.conditions.as_deref().filter(|c| !c.claims.is_empty()) else {
            return Ok(route);
        };
        let verified = match &route.guards.auth {
            Some(rule) => rule.verified_claims(headers, query).await.ok(),
            None => None,
        };
        if verified.is_some_and(|claims| cond.claims_hold(&claims)) {
            return Ok(route);
        }
        // Each pass skips one more route, so the loop ends.
        skipped.push(route);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions(cookies: &[(&str, Want)], query: &[(&str, Want)]) -> Conditions {
        let pairs = |list: &[(&str, Want)]| {
            list.iter()
                .map(|(k, w)| (Box::from(*k), w.clone()))
                .collect()
        };
        Conditions {
            cookies: pairs(cookies),
            query: pairs(query),
            claims: Box::default(),
        }
    }

    #[test]
    fn cookie_and_query_conditions() {
        let c = conditions(
            &[("beta", Want::Exact("1".into()))],
            &[("variant", Want::Exact("b c".into()))],
        );
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=2; beta=1".parse().unwrap());
        assert!(c.takes(&h, Some("x=1&variant=b+c")));
        assert!(c.takes(&h, Some("variant=b%20c")));
        assert!(!c.takes(&h, Some("variant=b")));
        assert!(!c.takes(&h, None));
        assert!(!c.takes(&HeaderMap::new(), Some("variant=b+c")));
        let any = conditions(&[], &[("debug", Want::Present)]);
        assert!(any.takes(&h, Some("debug")));
        assert!(any.takes(&h, Some("debug=0")));
        assert!(!any.takes(&h, Some("debugx=1")));
    }

    #[test]
    fn claim_conditions() {
        let c = Conditions {
            claims: vec![
                (ClaimPath::parse("plan").unwrap(), Want::Exact("pro".into())),
                (
                    ClaimPath::parse("groups").unwrap(),
                    Want::Exact("beta".into()),
                ),
            ]
            .into(),
            ..Default::default()
        };
        let claims = |v: Value| v.as_object().unwrap().clone();
        assert!(c.claims_hold(&claims(
            serde_json::json!({"plan": "pro", "groups": ["a", "beta"]})
        )));
        assert!(!c.claims_hold(&claims(
            serde_json::json!({"plan": "free", "groups": ["beta"]})
        )));
        assert!(!c.claims_hold(&claims(serde_json::json!({"plan": "pro"}))));
    }
}
