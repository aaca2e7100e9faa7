//! `match.cookies`, `match.query` and `match.claims` of a route: file types → [`Conditions`].

use std::collections::BTreeMap;

use toml::Spanned;

use super::{Conditions, Want};
use crate::config::Diagnostics;
use crate::config::file::{MatchFile, Text};
use crate::filter::auth::claims::ClaimPath;

/// The conditions of `match` (`key` is its key path, e.g. `routes[2].match`), or `None` when it
/// has none of them. `has_auth`: whether the route has `auth` (claim conditions need it).
pub fn compile(
    d: &mut Diagnostics,
    key: &str,
    m: &MatchFile,
    has_auth: bool,
) -> Option<Box<Conditions>> {
    if m.cookies.is_empty() && m.query.is_empty() && m.claims.is_empty() {
        return None;
    }
    let cookies = names(d, &m.cookies, &format!("{key}.cookies"), |n| {
        let token = !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        token
            .then(|| Box::from(n))
            .ok_or_else(|| format!("bad cookie name \"{n}\""))
    });
    let query = names(d, &m.query, &format!("{key}.query"), |n| {
        (!n.is_empty())
            .then(|| Box::from(n))
            .ok_or_else(|| "a query parameter name must not be empty".to_string())
    });
    let claims = names(d, &m.claims, &format!("{key}.claims"), ClaimPath::parse);
    if !has_auth {
        if let Some((first, _)) = m.claims.iter().next() {
            d.error(
                first.span(),
                format!("{key}.claims.{}", first.get_ref()),
                "claim conditions need `auth` on the route (claims come from a verified token)",
            );
        }
    }
    Some(Box::new(Conditions {
        cookies,
        query,
        claims,
    }))
}

fn names<N>(
    d: &mut Diagnostics,
    map: &BTreeMap<Spanned<String>, Text>,
    key: &str,
    parse: impl Fn(&str) -> Result<N, String>,
) -> Box<[(N, Want)]> {
    let mut out = Vec::new();
    for (name, value) in map {
        let Ok(n) = parse(name.get_ref()).map_err(|msg| {
            d.error(name.span(), format!("{key}.{}", name.get_ref()), msg);
        }) else {
            continue;
        };
        let want = match value.get_ref().as_str() {
            "*" => Want::Present,
            v => Want::Exact(v.into()),
        };
        out.push((n, want));
    }
    out.into_boxed_slice()
}
