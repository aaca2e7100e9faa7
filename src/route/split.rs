//! Weighted split of a route over several upstreams (canary), optionally sticky.
//!
//! Each side owns a range of `[0, total weight)` in config order. A request's point in that
//! range comes from a stable hash of its sticky key (or a random number without one), so a key
//! stays on its side while the weights stand, and moving weights only moves the keys whose
//! point falls in the part of the range that changed hands: 95/5 → 75/25 moves the keys in
//! `[75, 95)` from the first side to the second and no key the other way. No server state.

pub mod compile;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use prometheus_client::metrics::counter::Counter;

use super::chance::{random, stable_hash};
use crate::filter::Claims;
use crate::filter::auth::claims::{ClaimPath, claim_text};
use crate::upstream::Upstream;

/// A compiled `split = [...]` with its `sticky` key.
#[derive(Debug)]
pub struct Split {
    sides: Box<[Side]>,
    total: u64,
    sticky: Option<Sticky>,
}

/// One upstream of a split and the end of its range.
#[derive(Debug)]
pub struct Side {
    /// The upstream.
    pub upstream: Arc<Upstream>,
    /// Relative weight (0: drained).
    pub weight: u32,
    end: u64,
    /// `portico_route_split_total{route,upstream}`.
    count: Counter,
}

/// What keeps a client on its side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// A cookie the gateway sets when the client has none.
    Cookie {
        /// Cookie name.
        name: Box<str>,
        /// Its `Max-Age`.
        max_age: Duration,
    },
    /// A request header (a side is picked at random when it is missing).
    Header(HeaderName),
    /// A verified claim (a side is picked at random without one).
    Claim(ClaimPath),
    /// The client address (after trusted proxies).
    Ip,
}

/// What the split reads of a request.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// Request headers (cookie or header keys).
    pub headers: &'a HeaderMap,
    /// Verified claims, if the route authenticated the request.
    pub claims: Option<&'a Claims>,
    /// The client address (only read with `sticky = "ip"`).
    pub ip: IpAddr,
    /// Whether the client connection is TLS (the cookie gets `Secure`).
    pub tls: bool,
}

/// The side a request goes to, and the cookie that keeps the client there, if one must be set.
#[derive(Debug)]
pub struct Choice<'a> {
    /// The chosen upstream.
    pub upstream: &'a Arc<Upstream>,
    /// `Set-Cookie` for a client that had no sticky cookie.
    pub set_cookie: Option<HeaderValue>,
}

impl Split {
    /// Builds a split; `sides` are (upstream, weight, counter) in config order, with at least
    /// one positive weight (checked by the compiler).
    pub fn new(sides: Vec<(Arc<Upstream>, u32, Counter)>, sticky: Option<Sticky>) -> Split {
        let mut end = 0u64;
        let sides = sides
            .into_iter()
            .map(|(upstream, weight, count)| {
                end += u64::from(weight);
                Side {
                    upstream,
                    weight,
                    end,
                    count,
                }
            })
            .collect();
        Split {
            sides,
            total: end,
            sticky,
        }
    }

    /// The sides in config order.
    pub fn sides(&self) -> &[Side] {
        &self.sides
    }

    /// The side with the largest weight (the first of equals): the route's nominal upstream.
    pub fn main(&self) -> &Arc<Upstream> {
        let mut best = &self.sides[0];
        for s in self.sides.iter() {
            if s.weight > best.weight {
                best = s;
            }
        }
        &best.upstream
    }

    /// Whether choosing needs the client address.
    pub fn needs_ip(&self) -> bool {
        self.sticky == Some(Sticky::Ip)
    }

    /// Picks the side for a request and counts it.
    pub fn choose(&self, caller: &Caller<'_>) -> Choice<'_> {
        let mut set_cookie = None;
        let point = match &self.sticky {
            None => random(),
            Some(Sticky::Header(name)) => caller
                .headers
                .get(name)
                .map_or_else(random, |v| stable_hash(v.as_bytes())),
            Some(Sticky::Claim(path)) => caller
                .claims
                .and_then(|c| path.lookup(c))
                .and_then(claim_text)
                .map_or_else(random, |t| stable_hash(t.as_bytes())),
            Some(Sticky::Ip) => match caller.ip {
                IpAddr::V4(v4) => stable_hash(&v4.octets()),
                IpAddr::V6(v6) => stable_hash(&v6.octets()),
            },
            Some(Sticky::Cookie { name, max_age }) => {
                match crate::filter::auth::token::cookie(caller.headers, name) {
                    Some(value) => stable_hash(value.as_bytes()),
                    None => {
                        let value = format!("{:016x}", random());
                        set_cookie = Some(cookie_header(name, &value, *max_age, caller.tls));
                        stable_hash(value.as_bytes())
                    }
                }
            }
        };
        let side = self.side_at(point);
        side.count.inc();
        Choice {
            upstream: &side.upstream,
            set_cookie,
        }
    }

    /// The side whose range holds `point` scaled to `[0, total)`.
    fn side_at(&self, point: u64) -> &Side {
        let at = ((u128::from(point) * u128::from(self.total)) >> 64) as u64;
        self.sides
            .iter()
            .find(|s| at < s.end)
            .unwrap_or(&self.sides[self.sides.len() - 1])
    }
}

/// `NAME=VALUE; Path=/; Max-Age=N; HttpOnly; SameSite=Lax` (+ `Secure` over TLS).
fn cookie_header(name: &str, value: &str, max_age: Duration, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        max_age.as_secs()
    );
    // The name was checked as a cookie token when compiled; the value is hex.
    HeaderValue::from_str(&text).expect("a checked cookie name and hex value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(name: &str) -> Arc<Upstream> {
        let settings = crate::upstream::UpstreamSettings {
            endpoints: vec![crate::upstream::parse_endpoint("127.0.0.1:1").unwrap()],
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            fail_timeout: Duration::from_secs(1),
            max_idle_per_endpoint: 1,
            pool_idle_timeout: Duration::from_secs(1),
            tls: Default::default(),
            balance: crate::upstream::balance::BalanceSettings {
                weights: vec![1],
                ..Default::default()
            },
            health: None,
            outlier: None,
            protocol: Default::default(),
            max_concurrent_streams: 100,
            resilience: Default::default(),
            discovery: None,
        };
        Arc::new(Upstream::new(name.into(), settings))
    }

    fn split(weights: &[u32], sticky: Option<Sticky>) -> Split {
        let sides = weights
            .iter()
            .enumerate()
            .map(|(i, w)| (upstream(&format!("u{i}")), *w, Counter::default()))
            .collect();
        Split::new(sides, sticky)
    }

    #[test]
    fn moving_weights_moves_only_the_keys_that_must_move() {
        let (a, b) = (split(&[95, 5], None), split(&[75, 25], None));
        let mut moved = 0;
        for i in 0..10_000u32 {
            let p = stable_hash(format!("client-{i}").as_bytes());
            let (before, after) = (&*a.side_at(p).upstream.name, &*b.side_at(p).upstream.name);
            assert!(
                !(before == "u1" && after == "u0"),
                "canary client moved back"
            );
            moved += usize::from(before != after);
        }
        // About 20% of all keys: those in [75, 95).
        assert!((1_800..2_200).contains(&moved), "{moved}");
    }

    #[test]
    fn drained_side_gets_nothing_and_cookie_is_set_once() {
        let s = split(&[0, 1], None);
        assert!((0..1000).all(|_| &*s.choose(&caller(&HeaderMap::new())).upstream.name == "u1"));
        let sticky = Sticky::Cookie {
            name: "portico-split".into(),
            max_age: Duration::from_secs(60),
        };
        let s = split(&[50, 50], Some(sticky));
        let first = s.choose(&caller(&HeaderMap::new()));
        let set = first.set_cookie.clone().unwrap();
        let set = set.to_str().unwrap();
        assert!(
            set.ends_with("; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"),
            "{set}"
        );
        let mut headers = HeaderMap::new();
        headers.insert("cookie", set.split(';').next().unwrap().parse().unwrap());
        for _ in 0..20 {
            let again = s.choose(&caller(&headers));
            assert!(again.set_cookie.is_none());
            assert_eq!(again.upstream.name, first.upstream.name);
        }
    }

    fn caller(headers: &HeaderMap) -> Caller<'_> {
        Caller {
            headers,
            claims: None,
            ip: IpAddr::from([127, 0, 0, 1]),
            tls: false,
        }
    }
}
