//! Per-route rate limiting: named GCRA policies (`[rate_limits.NAME]`) keyed by client IP
//! (IPv6 by /64), a header, a verified claim, the route, or a composite of those.
//!
//! Buckets live in the policy, so every route naming a policy shares its keys (`route` keys are
//! per route or BFF profile). A refused request gets 429 with `Retry-After` and the
//! `RateLimit-Policy` / `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-10
//! (`"name";q=100;w=1` and `"name";r=0;t=3`).
//!
//! A policy with `scope = "cluster"` keeps its buckets in the `[cluster]` store instead
//! (see `cluster.rs`); its local limiter is then the fallback share used while the store fails.

pub mod cluster;
pub mod compile;
pub mod limiter;
pub mod store;

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use self::limiter::{Limiter, Outcome};
use crate::config::units::Rate;
use crate::error::GatewayError;
use crate::filter::Claims;
use crate::filter::auth::claims::{ClaimPath, claim_text};
use crate::net::canonical;

pub use self::compile::compile_policies;

/// How often idle keys are swept from a policy's store.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// One part of a policy key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client address (IPv6 by its /64).
    Ip,
    /// A request header's value.
    Header(HeaderName),
    /// A verified claim.
    Claim(ClaimPath),
    /// The route (or BFF profile): one bucket per route.
    Route,
    /// The consumer an API key was issued to.
    Consumer,
}

/// What a request without its key gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissing {
    /// All such requests share one bucket.
    Shared,
    /// Refused with 400.
    Deny,
    /// Not limited by this policy.
    Allow,
}

/// When the RateLimit fields are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMode {
    /// On 429 only.
    OnLimit,
    /// On every response of a limited route.
    Always,
}

/// Settings of one policy; equal settings across a reload keep its buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// Sustained rate.
    pub rate: Rate,
    /// Bucket size.
    pub burst: u32,
    /// Key parts, in order.
    pub key: Vec<KeyPart>,
    /// Requests without the key.
    pub on_missing: OnMissing,
    /// Most keys tracked.
    pub max_keys: usize,
    /// When to send RateLimit fields.
    pub headers: HeaderMode,
    /// Where the buckets live.
    pub scope: Scope,
}

/// Where a policy's buckets live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In this process.
    Local,
    /// In the `[cluster]` store, shared by every instance.
    Cluster(cluster::OnStoreError),
}

/// A compiled policy with its buckets.
#[derive(Debug)]
pub struct Policy {
    /// Name from the config.
    pub name: Arc<str>,
    /// Settings it was built from.
    pub settings: PolicySettings,
    limiter: Arc<Limiter>,
    hasher: std::hash::RandomState,
    policy_field: HeaderValue,
    counters: Option<Counters>,
    /// The shared store of a `scope = "cluster"` policy.
    cluster: Option<cluster::ClusterScope>,
}

/// Prometheus handles of one policy: `portico_rate_limit_requests_total{policy, outcome}`.
#[derive(Debug, Clone)]
struct Counters {
    admitted: Counter,
    limited: Counter,
}

type OutcomeFamily = Family<[(&'static str, String); 2], Counter>;

pub use crate::error::{RATELIMIT, RATELIMIT_POLICY, RateLimitHeaders};

/// What the key of one request is made from.
#[derive(Debug, Clone, Copy)]
pub struct KeyInput<'a> {
    /// Route id or BFF profile (for `route` keys).
    pub scope: &'a str,
    /// The client address.
    pub client_ip: IpAddr,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Verified claims, if the route authenticates.
    pub claims: Option<&'a Claims>,
    /// The consumer of a verified API key.
    pub consumer: Option<&'a str>,
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Policy {
    /// Builds a policy with empty buckets.
    pub fn new(name: Arc<str>, settings: PolicySettings) -> Policy {
        Policy::with_share(name, settings, 1)
    }

    /// A policy whose local limiter allows `1/share` of the rate and burst.
    fn with_share(name: Arc<str>, settings: PolicySettings, share: u32) -> Policy {
        let share = share.max(1);
        let limiter = Arc::new(Limiter::new(
            settings.rate.count,
            settings.rate.per * share,
            settings.burst.div_ceil(share),
            settings.max_keys,
            governor::clock::QuantaClock::default(),
        ));
        let window = secs_ceil(settings.rate.per).max(1);
        let policy_field =
            HeaderValue::from_str(&format!("\"{name}\";q={};w={window}", settings.rate.count))
                .unwrap_or(HeaderValue::from_static("\"policy\""));
        Policy {
            name,
            settings,
            limiter,
            hasher: std::hash::RandomState::new(),
            policy_field,
            counters: None,
            cluster: None,
        }
    }

    /// Counts this policy's decisions in the gateway's registry as
    /// `portico_rate_limit_requests_total{policy, outcome="admitted"|"limited"}`.
    pub fn with_metrics(mut self, metrics: &crate::metrics::Metrics) -> Policy {
        let family: OutcomeFamily = metrics.family(
            "portico_rate_limit_requests",
            "Requests checked by a rate-limit policy, by outcome",
            Family::default,
        );
        let series = |outcome: &str| {
            family
                .get_or_create(&[
                    ("policy", self.name.to_string()),
                    ("outcome", outcome.into()),
                ])
                .clone()
        };
        self.counters = Some(Counters {
            admitted: series("admitted"),
            limited: series("limited"),
        });
        self
    }

    /// The policy's limiter (counters, key count).
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// Whether the key reads verified claims.
    pub fn needs_claims(&self) -> bool {
        self.settings
            .key
            .iter()
            .any(|k| matches!(k, KeyPart::Claim(_) | KeyPart::Consumer))
    }

    /// Whether the key reads the consumer of an API key.
    pub fn needs_consumer(&self) -> bool {
        self.settings.key.contains(&KeyPart::Consumer)
    }

    /// Whether the key reads the client address.
    pub fn needs_ip(&self) -> bool {
        self.settings.key.contains(&KeyPart::Ip)
    }

    /// The request's key digest; `None` when a part is missing.
    fn key(&self, input: &KeyInput<'_>) -> Option<u64> {
        let mut h = self.hasher.build_hasher();
        self.key_parts(input, |bytes| h.write(bytes))?;
        Some(h.finish())
    }

    /// Feeds the request's key parts (each followed by 0xff) to `out`; `None` when a part is
    /// missing.
    fn key_parts(&self, input: &KeyInput<'_>, mut out: impl FnMut(&[u8])) -> Option<()> {
        for part in &self.settings.key {
            match part {
                KeyPart::Ip => match canonical(input.client_ip) {
                    IpAddr::V4(v4) => out(&v4.octets()),
                    IpAddr::V6(v6) => out(&v6.octets()[..8]),
                },
                KeyPart::Header(name) => out(input.headers.get(name)?.as_bytes()),
                KeyPart::Claim(path) => {
                    let value = path.lookup(input.claims?)?;
                    out(claim_text(value)?.as_bytes());
                }
                KeyPart::Route => out(input.scope.as_bytes()),
                KeyPart::Consumer => out(input.consumer?.as_bytes()),
            }
            out(&[0xff]);
        }
        Some(())
    }

    /// Takes one request from the bucket of the request's key. `Ok(Some(..))` carries the
    /// RateLimit fields for an admitted response when the policy sends them always.
    pub fn check(&self, input: &KeyInput<'_>) -> Result<Option<RateLimitHeaders>, GatewayError> {
        match self.local_key(input)? {
            Some(key) => self.check_local(key),
            None => Ok(None),
        }
    }

    /// The request's digest for the local limiter; `Ok(None)`: not limited (`on_missing_key =
    /// "allow"`).
    fn local_key(&self, input: &KeyInput<'_>) -> Result<Option<u64>, GatewayError> {
        match (self.key(input), self.settings.on_missing) {
            (Some(k), _) => Ok(Some(k)),
            (None, OnMissing::Shared) => {
                let mut h = self.hasher.build_hasher();
                h.write(MISSING_KEY);
                Ok(Some(h.finish()))
            }
            (None, OnMissing::Allow) => Ok(None),
            (None, OnMissing::Deny) => Err(missing_key()),
        }
    }

    /// Decides with the local limiter.
    fn check_local(&self, key: u64) -> Result<Option<RateLimitHeaders>, GatewayError> {
        self.ensure_sweeper();
        let outcome = self.limiter.check(key);
        self.answer(outcome)
    }

    /// Counts an outcome and turns it into the guard's answer.
    fn answer(&self, outcome: Outcome) -> Result<Option<RateLimitHeaders>, GatewayError> {
        if let Some(c) = &self.counters {
            match outcome {
                Outcome::Admitted { .. } => c.admitted.inc(),
                Outcome::Limited { .. } => c.limited.inc(),
            };
        }
        match outcome {
            Outcome::Admitted { remaining, full_in } => Ok(match self.settings.headers {
                HeaderMode::OnLimit => None,
                HeaderMode::Always => Some(self.fields(remaining, secs_ceil(full_in))),
            }),
            Outcome::Limited { retry_after } => {
                let secs = secs_ceil(retry_after).max(1);
                Err(GatewayError::RateLimited {
                    policy: self.name.clone(),
                    retry_after_secs: secs,
                    headers: self.fields(0, secs),
                })
            }
        }
    }

    fn fields(&self, remaining: u32, reset: u64) -> RateLimitHeaders {
        let state = format!("\"{}\";r={remaining};t={reset}", self.name);
        RateLimitHeaders {
            policy: self.policy_field.clone(),
            state: HeaderValue::from_str(&state).unwrap_or(HeaderValue::from_static("\"policy\"")),
        }
    }

    /// Starts (once) a background task that drops idle keys; it ends when the policy's buckets
    /// are dropped (after a reload that changed the policy).
    fn ensure_sweeper(&self) {
        if self.limiter.sweeper_started.get().is_some() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.limiter.sweeper_started.get_or_init(|| {
            let weak = Arc::downgrade(&self.limiter);
            rt.spawn(async move {
                let mut tick = tokio::time::interval(SWEEP_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(limiter) = weak.upgrade() else {
                        break;
                    };
                    limiter.sweep();
                }
            });
        });
    }
}

/// What the bucket of requests without their key is keyed by (`on_missing_key = "shared"`).
const MISSING_KEY: &[u8] = b"\0portico-missing-key\0";

fn missing_key() -> GatewayError {
    GatewayError::BadRequest(
        "This route needs a rate-limit key (a header or claim) the request does not carry.",
    )
}

/// The client address a policy keys on: the peer, or, when the peer is a trusted proxy, the
/// right-most address in X-Forwarded-For that is not itself a trusted proxy.
pub fn client_ip(trusted: &[crate::net::Cidr], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !crate::filter::headers::is_trusted(trusted, peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all(&crate::filter::headers::X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|ip| !crate::filter::headers::is_trusted(trusted, *ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(key: Vec<KeyPart>, on_missing: OnMissing) -> Policy {
        Policy::new(
            "p".into(),
            PolicySettings {
                rate: Rate {
                    count: 1,
                    per: Duration::from_secs(3600),
                },
                burst: 1,
                key,
                on_missing,
                max_keys: 100,
                headers: HeaderMode::OnLimit,
                scope: Scope::Local,
            },
        )
    }

    fn input<'a>(headers: &'a HeaderMap, ip: &str) -> KeyInput<'a> {
        KeyInput {
            scope: "r1",
            client_ip: ip.parse().unwrap(),
            headers,
            claims: None,
            consumer: None,
        }
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        let p = policy(vec![KeyPart::Ip], OnMissing::Shared);
        let h = HeaderMap::new();
        assert!(p.check(&input(&h, "2001:db8:1:2::1")).is_ok());
        assert!(
            p.check(&input(&h, "2001:db8:1:2:ffff::9")).is_err(),
            "same /64"
        );
        assert!(p.check(&input(&h, "2001:db8:1:3::1")).is_ok(), "other /64");
        assert!(p.check(&input(&h, "10.0.0.1")).is_ok());
        assert!(
            p.check(&input(&h, "::ffff:10.0.0.1")).is_err(),
            "mapped v4 is the same client"
        );
    }

    #[test]
    fn missing_keys() {
        let h = HeaderMap::new();
        let name = HeaderName::from_static("x-api-key");
        let shared = policy(vec![KeyPart::Header(name.clone())], OnMissing::Shared);
        assert!(shared.check(&input(&h, "1.1.1.1")).is_ok());
        assert!(
            shared.check(&input(&h, "2.2.2.2")).is_err(),
            "one shared bucket"
        );
        let allow = policy(vec![KeyPart::Header(name.clone())], OnMissing::Allow);
        for _ in 0..3 {
            assert!(allow.check(&input(&h, "1.1.1.1")).unwrap().is_none());
        }
        let deny = policy(vec![KeyPart::Header(name)], OnMissing::Deny);
        assert!(matches!(
            deny.check(&input(&h, "1.1.1.1")),
            Err(GatewayError::BadRequest(_))
        ));
    }

    #[test]
    fn refusal_carries_fields() {
        let p = policy(vec![KeyPart::Route], OnMissing::Shared);
        let h = HeaderMap::new();
        p.check(&input(&h, "1.1.1.1")).unwrap();
        let Err(GatewayError::RateLimited {
            retry_after_secs,
            headers,
            ..
        }) = p.check(&input(&h, "1.1.1.1"))
        else {
            panic!("second request refused");
        };
        assert!((3599..=3600).contains(&retry_after_secs));
        assert_eq!(headers.policy, "\"p\";q=1;w=3600");
        assert_eq!(
            headers.state,
            format!("\"p\";r=0;t={retry_after_secs}").as_str()
        );
    }

    #[test]
    fn client_ip_behind_trusted_proxies() {
        let trusted = vec![crate::net::Cidr::parse("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 1.2.3.4, 10.0.0.7"),
        );
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(&trusted, peer, &h),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        let outsider: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(
            client_ip(&trusted, outsider, &h),
            outsider,
            "untrusted peers cannot pick their key"
        );
    }
}
