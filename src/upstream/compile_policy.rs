//! Compiles an upstream's balancing and health keys (file types -> runtime settings): weighted
//! endpoints, `lb`, `hash_key`, `slow_start`, `[health]` and `[outlier]`. Every bad value is
//! recorded in the diagnostics with its file:line:col and key path.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use toml::Spanned;

use super::balance::{BalanceSettings, HashKey, Policy};
use super::health::HealthSettings;
use super::outlier::OutlierSettings;
use crate::config::diag::Diagnostics;
use crate::config::file::Text;
use crate::config::file::UpstreamFile;
use crate::config::file::balance::{HealthFile, OutlierFile, StatusFile};
use crate::filter::auth::claims::ClaimPath;

/// Largest endpoint weight.
pub const MAX_WEIGHT: i64 = 1000;

/// The balancing and health part of an upstream's settings.
pub struct Compiled {
    /// Endpoint addresses, in order.
    pub endpoints: Vec<(Scheme, Authority)>,
    /// `lb`, `hash_key`, weights, `slow_start`, panic threshold.
    pub balance: BalanceSettings,
    /// `[health]`.
    pub health: Option<Arc<HealthSettings>>,
    /// `[outlier]`.
    pub outlier: Option<OutlierSettings>,
}

/// Compiles the endpoints and the policy keys of `[upstreams.NAME]` (`key` is that path).
pub fn compile(d: &mut Diagnostics, u: &UpstreamFile, key: &str) -> Compiled {
    let (endpoints, weights) = endpoints(d, u, key);
    let (outlier, panic_threshold) = match &u.outlier {
        Some(o) => outlier(d, o.get_ref(), &format!("{key}.outlier")),
        None => (None, 50),
    };
    let health = u
        .health
        .as_ref()
        .and_then(|h| health(d, h.get_ref(), &format!("{key}.health")));
    let mut balance = balance(d, u, key);
    balance.weights = weights;
    balance.panic_threshold = panic_threshold;
    Compiled {
        endpoints,
        balance,
        health,
        outlier,
    }
}

fn endpoints(
    d: &mut Diagnostics,
    u: &UpstreamFile,
    key: &str,
) -> (Vec<(Scheme, Authority)>, Vec<u32>) {
    if u.endpoints.get_ref().is_empty() && u.discovery.is_none() {
        d.error(
            u.endpoints.span(),
            format!("{key}.endpoints"),
            "needs at least one endpoint",
        );
    }
    let mut addrs = Vec::new();
    let mut weights = Vec::new();
    for (i, e) in u.endpoints.get_ref().iter().enumerate() {
        let k = format!("{key}.endpoints[{i}]");
        let file = e.get_ref();
        let parsed = match super::parse_endpoint(file.address()) {
            Ok(a) => a,
            Err(msg) => {
                d.error(e.span(), k, msg);
                continue;
            }
        };
        let weight = match file.weight {
            None => 1,
            Some(w) if (1..=MAX_WEIGHT).contains(&w) => w as u32,
            Some(w) => {
                d.error(
                    e.span(),
                    format!("{k}.weight"),
                    format!("must be between 1 and {MAX_WEIGHT}, got {w}"),
                );
                continue;
            }
        };
        if addrs.contains(&parsed) {
            d.error(
                e.span(),
                k,
                format!(
                    "endpoint \"{}\" is listed twice (give it a weight instead)",
                    file.address()
                ),
            );
            continue;
        }
        addrs.push(parsed);
        weights.push(weight);
    }
    (addrs, weights)
}

fn balance(d: &mut Diagnostics, u: &UpstreamFile, key: &str) -> BalanceSettings {
    let policy = match &u.lb {
        None => Policy::RoundRobin,
        Some(t) => d
            .parse(t, format!("{key}.lb"), |s| match s {
                "round_robin" => Ok(Policy::RoundRobin),
                "least_request" => Ok(Policy::LeastRequest),
                "consistent_hash" => Ok(Policy::ConsistentHash),
                "random" => Ok(Policy::Random),
                other => Err(format!(
                    "unknown lb \"{other}\" (use round_robin, least_request, consistent_hash or random)"
                )),
            })
            .unwrap_or(Policy::RoundRobin),
    };
    let hash_key = u
        .hash_key
        .as_ref()
        .and_then(|t| d.parse(t, format!("{key}.hash_key"), parse_hash_key));
    match (&u.hash_key, policy, &u.lb) {
        (Some(t), p, _) if p != Policy::ConsistentHash => d.error(
            t.span(),
            format!("{key}.hash_key"),
            "hash_key needs lb = \"consistent_hash\"",
        ),
        (None, Policy::ConsistentHash, Some(lb)) => d.error(
            lb.span(),
            format!("{key}.lb"),
            "consistent_hash needs a hash_key (header:NAME, cookie:NAME, claim:NAME, ip or path)",
        ),
        _ => {}
    }
    let slow_start = d.duration_or(&u.slow_start, &format!("{key}.slow_start"), Duration::ZERO);
    BalanceSettings {
        policy,
        hash_key,
        weights: Vec::new(),
        slow_start,
        panic_threshold: 50,
    }
}

/// Parses `header:NAME`, `cookie:NAME`, `claim:NAME`, `ip` or `path`.
pub fn parse_hash_key(text: &str) -> Result<HashKey, String> {
    let bad =
        || format!("bad hash_key \"{text}\": use header:NAME, cookie:NAME, claim:NAME, ip or path");
    match text.split_once(':') {
        None if text == "ip" => Ok(HashKey::Ip),
        None if text == "path" => Ok(HashKey::Path),
        Some(("header", name)) => HeaderName::from_bytes(name.as_bytes())
            .map(HashKey::Header)
            .map_err(|_| format!("bad header name \"{name}\" in hash_key")),
        Some(("cookie", name)) if !name.is_empty() && !name.contains([';', '=', ' ']) => {
            Ok(HashKey::Cookie(name.into()))
        }
        Some(("claim", name)) => ClaimPath::parse(name).map(HashKey::Claim),
        _ => Err(bad()),
    }
}

fn count(
    d: &mut Diagnostics,
    v: &Option<Spanned<i64>>,
    key: String,
    range: Range<i64>,
    default: u32,
) -> u32 {
    match v {
        None => default,
        Some(n) if range.contains(n.get_ref()) => *n.get_ref() as u32,
        Some(n) => {
            d.error(
                n.span(),
                key,
                format!(
                    "must be between {} and {}, got {}",
                    range.start,
                    range.end - 1,
                    n.get_ref()
                ),
            );
            default
        }
    }
}

fn duration(d: &mut Diagnostics, v: &Option<Text>, key: String, default: Duration) -> Duration {
    d.duration_or(v, &key, default)
}

fn health(d: &mut Diagnostics, h: &HealthFile, key: &str) -> Option<Arc<HealthSettings>> {
    let before = d.errors.len();
    let path = d.parse(&h.path, format!("{key}.path"), |p| {
        if !p.starts_with('/') {
            return Err(format!("bad path \"{p}\": must start with '/'"));
        }
        PathAndQuery::try_from(p).map_err(|_| format!("bad path \"{p}\""))
    });
    let interval = duration(
        d,
        &h.interval,
        format!("{key}.interval"),
        Duration::from_secs(10),
    );
    let timeout = duration(
        d,
        &h.timeout,
        format!("{key}.timeout"),
        Duration::from_secs(1),
    );
    if let Some(t) = h.interval.as_ref().or(h.timeout.as_ref()) {
        if interval < timeout {
            d.error(
                t.span(),
                format!("{key}.interval"),
                format!("interval ({interval:?}) must not be shorter than timeout ({timeout:?})"),
            );
        } else if timeout.is_zero() {
            d.error(t.span(), format!("{key}.timeout"), "must be more than 0");
        }
    }
    let unhealthy_threshold = count(
        d,
        &h.unhealthy_threshold,
        format!("{key}.unhealthy_threshold"),
        1..1001,
        3,
    );
    let healthy_threshold = count(
        d,
        &h.healthy_threshold,
        format!("{key}.healthy_threshold"),
        1..1001,
        2,
    );
    let expected = match &h.expected_statuses {
        None => vec![(200, 299)],
        Some(list) => {
            if list.get_ref().is_empty() {
                d.error(
                    list.span(),
                    format!("{key}.expected_statuses"),
                    "needs at least one status or range",
                );
            }
            list.get_ref()
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let r = status_range(s.get_ref());
                    if let Err(msg) = &r {
                        d.error(
                            s.span(),
                            format!("{key}.expected_statuses[{i}]"),
                            msg.clone(),
                        );
                    }
                    r.ok()
                })
                .collect()
        }
    };
    let host = h.host.as_ref().and_then(|t| {
        d.parse(t, format!("{key}.host"), |s| {
            HeaderValue::from_str(s)
                .ok()
                .filter(|_| !s.is_empty() && !s.contains([' ', '/']))
                .ok_or_else(|| format!("bad host \"{s}\": expected host or host:port"))
        })
    });
    if d.errors.len() > before {
        return None;
    }
    Some(Arc::new(HealthSettings {
        path: path?,
        interval,
        timeout,
        unhealthy_threshold,
        healthy_threshold,
        expected,
        host,
    }))
}

/// `200`, `"200"` or `"200-299"`, within 100..=599.
fn status_range(s: &StatusFile) -> Result<(u16, u16), String> {
    let one = |n: i64| -> Result<u16, String> {
        if (100..=599).contains(&n) {
            Ok(n as u16)
        } else {
            Err(format!("status {n} is not between 100 and 599"))
        }
    };
    match s {
        StatusFile::Code(n) => one(*n).map(|c| (c, c)),
        StatusFile::Text(t) => {
            let num = |x: &str| {
                x.trim().parse::<i64>().map_err(|_| {
                    format!("bad status \"{t}\": expected \"200\" or a range \"200-299\"")
                })
            };
            let (lo, hi) = match t.split_once('-') {
                Some((a, b)) => (one(num(a)?)?, one(num(b)?)?),
                None => {
                    let c = one(num(t)?)?;
                    (c, c)
                }
            };
            if lo > hi {
                return Err(format!("bad range \"{t}\": the first status is larger"));
            }
            Ok((lo, hi))
        }
    }
}

fn outlier(d: &mut Diagnostics, o: &OutlierFile, key: &str) -> (Option<OutlierSettings>, u8) {
    let before = d.errors.len();
    let consecutive_failures = count(
        d,
        &o.consecutive_failures,
        format!("{key}.consecutive_failures"),
        1..100_001,
        5,
    );
    let consecutive_gateway_errors = o.consecutive_gateway_errors.as_ref().map(|_| {
        count(
            d,
            &o.consecutive_gateway_errors,
            format!("{key}.consecutive_gateway_errors"),
            1..100_001,
            5,
        )
    });
    let base_ejection = duration(
        d,
        &o.base_ejection,
        format!("{key}.base_ejection"),
        Duration::from_secs(30),
    );
    let max_ejection = duration(
        d,
        &o.max_ejection,
        format!("{key}.max_ejection"),
        Duration::from_secs(300),
    );
    if let Some(t) = &o.base_ejection {
        if base_ejection.is_zero() {
            d.error(
                t.span(),
                format!("{key}.base_ejection"),
                "must be more than 0",
            );
        }
    }
    if let Some(t) = o.max_ejection.as_ref().or(o.base_ejection.as_ref()) {
        if max_ejection < base_ejection {
            d.error(
                t.span(),
                format!("{key}.max_ejection"),
                format!("max_ejection ({max_ejection:?}) must not be shorter than base_ejection ({base_ejection:?})"),
            );
        }
    }
    let max_ejected_percent = count(
        d,
        &o.max_ejected_percent,
        format!("{key}.max_ejected_percent"),
        0..101,
        10,
    ) as u8;
    let panic_threshold = count(
        d,
        &o.panic_threshold,
        format!("{key}.panic_threshold"),
        0..101,
        50,
    ) as u8;
    // A `consecutive_gateway_errors` table alone does not turn on `consecutive_failures`.
    let consecutive_failures = (o.consecutive_failures.is_some()
        || consecutive_gateway_errors.is_none())
    .then_some(consecutive_failures);
    if d.errors.len() > before {
        return (None, panic_threshold);
    }
    let settings = OutlierSettings {
        consecutive_failures,
        consecutive_gateway_errors,
        base_ejection,
        max_ejection,
        max_ejected_percent,
    };
    (Some(settings), panic_threshold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys_parse() {
        assert_eq!(parse_hash_key("ip").unwrap(), HashKey::Ip);
        assert_eq!(parse_hash_key("path").unwrap(), HashKey::Path);
        assert!(
            matches!(parse_hash_key("header:x-user").unwrap(), HashKey::Header(h) if h == "x-user")
        );
        assert!(
            matches!(parse_hash_key("cookie:sid").unwrap(), HashKey::Cookie(c) if &*c == "sid")
        );
        assert!(matches!(
            parse_hash_key("claim:org.id").unwrap(),
            HashKey::Claim(_)
        ));
        assert!(parse_hash_key("header:bad name").is_err());
        assert!(parse_hash_key("cookie:").is_err());
        assert!(parse_hash_key("route").is_err());
    }

    #[test]
    fn status_ranges() {
        assert_eq!(status_range(&StatusFile::Code(204)).unwrap(), (204, 204));
        assert_eq!(
            status_range(&StatusFile::Text("200-299".into())).unwrap(),
            (200, 299)
        );
        assert_eq!(
            status_range(&StatusFile::Text("301".into())).unwrap(),
            (301, 301)
        );
        assert!(status_range(&StatusFile::Text("299-200".into())).is_err());
        assert!(status_range(&StatusFile::Code(42)).is_err());
        assert!(status_range(&StatusFile::Text("2xx".into())).is_err());
    }
}
