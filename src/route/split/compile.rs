//! `split`, `sticky` and `sticky_max_age` of a route: file types → [`Split`].

use std::time::Duration;

use http::HeaderName;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::{Split, Sticky};
use crate::config::Diagnostics;
use crate::config::file::RouteFile;
use crate::filter::auth::claims::ClaimPath;
use crate::route::compile::{Context, upstream_ref};

/// Largest weight of one side (weights are relative; this only keeps sums small).
const MAX_WEIGHT: i64 = 1_000_000;
/// Default `sticky_max_age`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// `portico_route_split_total{route,upstream}`.
pub type SplitFamily = Family<[(&'static str, String); 2], Counter>;

/// The split of route `r` (`key` is its key path, e.g. `routes[2]`), or `None` without one.
/// Also checks that `split` and `upstream` are not both given and that `sticky` has a split.
pub fn compile(d: &mut Diagnostics, key: &str, r: &RouteFile, cx: Context<'_>) -> Option<Split> {
    let route = r.id.get_ref().as_str();
    let Some(split) = &r.split else {
        if let Some(s) = &r.sticky {
            d.error(
                s.span(),
                format!("{key}.sticky"),
                "`sticky` needs a `split` on the same route",
            );
        }
        return None;
    };
    if r.upstream.is_some() {
        d.error(
            split.span(),
            format!("{key}.split"),
            "give `upstream` or `split`, not both",
        );
    }
    let before = d.errors.len();
    let family: SplitFamily = cx.metrics.family(
        "portico_route_split",
        "Requests sent to each side of a route's split, by route and upstream",
        Family::default,
    );
    let mut sides = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, side) in split.get_ref().iter().enumerate() {
        let side_key = format!("{key}.split[{i}]");
        let name = side.upstream.get_ref().as_str();
        if seen.contains(&name) {
            d.error(
                side.upstream.span(),
                format!("{side_key}.upstream"),
                format!("upstream `{name}` is listed twice in the split"),
            );
        }
        seen.push(name);
        let weight = *side.weight.get_ref();
        if !(0..=MAX_WEIGHT).contains(&weight) {
            d.error(
                side.weight.span(),
                format!("{side_key}.weight"),
                format!("must be between 0 and {MAX_WEIGHT}, got {weight}"),
            );
        }
        let found = upstream_ref(
            d,
            &side.upstream,
            &format!("{side_key}.upstream"),
            route,
            cx,
        );
        if let Some(u) = found {
            let count = family
                .get_or_create_owned(&[("route", route.to_owned()), ("upstream", name.into())]);
            sides.push((u, weight.clamp(0, MAX_WEIGHT) as u32, count));
        }
    }
    if split.get_ref().iter().all(|s| *s.weight.get_ref() <= 0) {
        d.error(
            split.span(),
            format!("{key}.split"),
            "needs at least one side with a positive weight",
        );
    }
    let sticky = r.sticky.as_ref().and_then(|s| {
        let max_age = d.positive_duration_or(
            &r.sticky_max_age,
            &format!("{key}.sticky_max_age"),
            DEFAULT_MAX_AGE,
        );
        let sticky = d.parse(s, format!("{key}.sticky"), |t| parse_sticky(t, max_age))?;
        if matches!(sticky, Sticky::Claim(_)) && r.auth.is_none() {
            d.error(
                s.span(),
                format!("{key}.sticky"),
                "`claim:` stickiness needs `auth` on the route (claims come from a verified token)",
            );
        }
        Some(sticky)
    });
    if d.errors.len() > before {
        return None;
    }
    Some(Split::new(sides, sticky))
}

/// `cookie:NAME`, `header:NAME`, `claim:NAME` or `ip`.
pub fn parse_sticky(text: &str, max_age: Duration) -> Result<Sticky, String> {
    let bad = |why: &str| format!("bad sticky key \"{text}\": {why}");
    match text.split_once(':') {
        None if text == "ip" => Ok(Sticky::Ip),
        Some(("cookie", name)) => {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return Err(bad("a cookie name is letters, digits and !#$%&'*+-.^_`|~"));
            }
            Ok(Sticky::Cookie {
                name: name.into(),
                max_age,
            })
        }
        Some(("header", name)) => HeaderName::from_bytes(name.as_bytes())
            .map(Sticky::Header)
            .map_err(|_| bad("not a header name")),
        Some(("claim", name)) => ClaimPath::parse(name).map(Sticky::Claim),
        _ => Err(bad("expected cookie:NAME, header:NAME, claim:NAME or ip")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_keys_parse() {
        let day = DEFAULT_MAX_AGE;
        assert_eq!(parse_sticky("ip", day).unwrap(), Sticky::Ip);
        assert!(matches!(
            parse_sticky("cookie:portico-split", day).unwrap(),
            Sticky::Cookie { .. }
        ));
        assert!(matches!(
            parse_sticky("header:x-user", day).unwrap(),
            Sticky::Header(_)
        ));
        assert!(matches!(
            parse_sticky("claim:sub", day).unwrap(),
            Sticky::Claim(_)
        ));
        assert!(parse_sticky("cookie:a b", day).is_err());
        assert!(parse_sticky("query:x", day).is_err());
        assert!(parse_sticky("", day).is_err());
    }
}
