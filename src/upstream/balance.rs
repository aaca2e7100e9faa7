//! Endpoint selection: `round_robin` (smooth weighted), `least_request` (power of two choices
//! on in-flight requests per weight), `consistent_hash` (Maglev) and `random` (weighted), over
//! the endpoints that are usable now (active checks passing, not ejected), with slow start and
//! panic mode. The send loop asks [`Balancer::pick`] for an endpoint not tried yet; outcomes
//! go to `outlier::report`.

pub mod hash;
pub mod maglev;
pub mod rng;
pub mod schedule;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderMap;
use http::header::{COOKIE, HeaderName};
use serde_json::{Map, Value};

use super::Endpoint;
use super::state::{Board, clock_ms};
use crate::filter::auth::claims::{ClaimPath, claim_text};
use crate::net::Cidr;
use maglev::Maglev;
use rng::Rng;

/// `lb`: how an endpoint is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Smooth weighted round robin (the default).
    RoundRobin,
    /// Power of two random choices, fewer in-flight requests per weight wins.
    LeastRequest,
    /// Maglev table over `hash_key`.
    ConsistentHash,
    /// Weighted random.
    Random,
}

impl Policy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round_robin",
            Policy::LeastRequest => "least_request",
            Policy::ConsistentHash => "consistent_hash",
            Policy::Random => "random",
        }
    }
}

/// `hash_key`: what a consistent-hash key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A request header's value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(Box<str>),
    /// A verified claim (routes with `auth`).
    Claim(ClaimPath),
    /// The client address (behind `trusted_proxies`, from X-Forwarded-For).
    Ip,
    /// The request path.
    Path,
}

/// What a request offers for its consistent-hash key.
#[derive(Debug, Clone, Copy)]
pub struct KeySource<'a> {
    /// The client's request headers.
    pub headers: &'a HeaderMap,
    /// The client's request path.
    pub path: &'a str,
    /// The connection's peer address.
    pub peer: IpAddr,
    /// `server.trusted_proxies`, for `ip` keys.
    pub trusted: &'a [Cidr],
    /// Verified claims, if the route authenticates.
    pub claims: Option<&'a Map<String, Value>>,
}

impl HashKey {
    /// The request's key hashed, or `None` when it has no such key (it then goes round robin).
    pub fn hash(&self, src: &KeySource<'_>) -> Option<u64> {
        let seed = 0x6b65_7973;
        match self {
            HashKey::Header(name) => {
                Some(hash::hash_bytes(seed, src.headers.get(name)?.as_bytes()))
            }
            HashKey::Cookie(name) => cookie(src.headers, name).map(|v| hash::hash_bytes(seed, v)),
            HashKey::Claim(path) => {
                let text = claim_text(path.lookup(src.claims?)?)?;
                Some(hash::hash_bytes(seed, text.as_bytes()))
            }
            HashKey::Ip => {
                let ip = crate::filter::rate_limit::client_ip(src.trusted, src.peer, src.headers);
                Some(match ip {
                    IpAddr::V4(v4) => hash::hash_bytes(seed, &v4.octets()),
                    IpAddr::V6(v6) => hash::hash_bytes(seed, &v6.octets()),
                })
            }
            HashKey::Path => Some(hash::hash_bytes(seed, src.path.as_bytes())),
        }
    }
}

/// The value of cookie `name` in the `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
        })
}

/// Selection settings of an upstream (compared on reload like the rest of its settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceSettings {
    /// `lb`.
    pub policy: Policy,
    /// `hash_key` (only with `consistent_hash`).
    pub hash_key: Option<HashKey>,
    /// Endpoint weights, in endpoint order.
    pub weights: Vec<u32>,
    /// `slow_start` window (zero: off).
    pub slow_start: Duration,
    /// Below this percentage of usable endpoints, balance over all of them.
    pub panic_threshold: u8,
}

impl Default for BalanceSettings {
    fn default() -> Self {
        BalanceSettings {
            policy: Policy::RoundRobin,
            hash_key: None,
            weights: Vec::new(),
            slow_start: Duration::ZERO,
            panic_threshold: 50,
        }
    }
}

/// Endpoints already tried by one request (so a retry goes elsewhere).
#[derive(Debug, Default)]
pub struct Tried {
    inline: [u32; 6],
    len: usize,
    spill: Vec<u32>,
}

impl Tried {
    /// Records an endpoint.
    pub fn add(&mut self, i: usize) {
        if self.len < self.inline.len() {
            self.inline[self.len] = i as u32;
        } else {
            self.spill.push(i as u32);
        }
        self.len += 1;
    }

    /// Whether `i` was tried.
    #[inline]
    pub fn contains(&self, i: usize) -> bool {
        let i = i as u32;
        self.inline[..self.len.min(self.inline.len())].contains(&i) || self.spill.contains(&i)
    }

    /// How many were tried.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none was tried.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A chosen endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Index into the upstream's endpoints.
    pub index: usize,
    /// Chosen in panic mode (too few usable endpoints, so all were candidates).
    pub panic: bool,
}

const NEVER: u64 = u64::MAX;
/// Ramp rejections tolerated per pick before a ramping endpoint is taken anyway.
const MAX_RAMP_REJECTS: usize = 8;

/// Which endpoints are candidates, rebuilt when one changes usability (rarely).
#[derive(Debug)]
struct Snapshot {
    /// Board epoch this was built at.
    epoch: u64,
    /// When a time-limited exclusion or a ramp ends (then the snapshot is rebuilt).
    expires: u64,
    /// Some candidate is still ramping up (slow start).
    ramping: bool,
    /// Too few usable endpoints: every endpoint is a candidate.
    panic: bool,
    /// Candidate endpoint indices.
    candidates: Box<[u32]>,
    /// `is_candidate[i]`, for hash walks.
    is_candidate: Box<[bool]>,
    /// Weighted interleaving of the candidates (round robin, random, hash fallback).
    schedule: Box<[u32]>,
}

/// An upstream's endpoint selector.
#[derive(Debug)]
pub struct Balancer {
    settings: BalanceSettings,
    board: Arc<Board>,
    maglev: Option<Maglev>,
    snapshot: ArcSwap<Snapshot>,
    rebuilding: Mutex<()>,
    rr: AtomicUsize,
}

impl Balancer {
    /// A selector over `eps` (their states share `board`).
    pub fn new(settings: BalanceSettings, board: Arc<Board>, eps: &[Endpoint]) -> Balancer {
        let maglev = (settings.policy == Policy::ConsistentHash).then(|| {
            let names: Vec<String> = eps.iter().map(Endpoint::label).collect();
            let weights: Vec<u32> = eps.iter().map(|e| e.weight).collect();
            Maglev::build(&names, &weights)
        });
        let first = build(&settings, eps, board.epoch(), clock_ms());
        Balancer {
            settings,
            board,
            maglev,
            snapshot: ArcSwap::from_pointee(first),
            rebuilding: Mutex::new(()),
            rr: AtomicUsize::new(0),
        }
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.settings.policy
    }

    /// The settings.
    pub fn settings(&self) -> &BalanceSettings {
        &self.settings
    }

    /// The request's consistent-hash key, when the policy uses one and the request has it.
    #[inline]
    pub fn key(&self, src: &KeySource<'_>) -> Option<u64> {
        match &self.settings.hash_key {
            Some(k) => k.hash(src),
            None => None,
        }
    }

    /// Whether the last snapshot is in panic mode.
    pub fn in_panic(&self) -> bool {
        self.snapshot.load().panic
    }

    /// Chooses an endpoint not in `tried`; `None` when every candidate was tried (or none is
    /// usable and panic mode is off).
    pub fn pick(
        &self,
        eps: &[Endpoint],
        key: Option<u64>,
        tried: &Tried,
        rng: &mut Rng,
    ) -> Option<Pick> {
        let mut snap = self.snapshot.load();
        let mut now = 0;
        let epoch = self.board.epoch();
        if snap.epoch != epoch || snap.expires != NEVER {
            now = clock_ms();
            if snap.epoch != epoch || now >= snap.expires {
                self.rebuild(eps, now);
                snap = self.snapshot.load();
            }
        }
        if snap.candidates.is_empty() {
            return None;
        }
        let ramp = (snap.ramping && !self.settings.slow_start.is_zero())
            .then_some((now, self.settings.slow_start.as_millis() as u64));
        let index = match (self.settings.policy, key, &self.maglev) {
            (Policy::ConsistentHash, Some(k), Some(m)) => walk(m, &snap, k, tried),
            (Policy::LeastRequest, ..) => least_request(&snap, eps, tried, rng, ramp),
            (Policy::Random, ..) => {
                let start = rng.below(snap.schedule.len());
                from_schedule(&snap, eps, start, tried, rng, ramp)
            }
            _ => {
                let start = self.rr.fetch_add(1, Ordering::Relaxed);
                from_schedule(&snap, eps, start, tried, rng, ramp)
            }
        }?;
        Some(Pick {
            index,
            panic: snap.panic,
        })
    }

    fn rebuild(&self, eps: &[Endpoint], now: u64) {
        // One rebuild at a time; the others go on with the previous snapshot meanwhile.
        let Ok(_one) = self.rebuilding.try_lock() else {
            return;
        };
        let epoch = self.board.epoch();
        self.snapshot
            .store(Arc::new(build(&self.settings, eps, epoch, now.max(1))));
    }
}

fn build(s: &BalanceSettings, eps: &[Endpoint], epoch: u64, now: u64) -> Snapshot {
    let mut expires = NEVER;
    let mut ramping = false;
    let window = s.slow_start.as_millis() as u64;
    let mut usable = Vec::with_capacity(eps.len());
    for (i, ep) in eps.iter().enumerate() {
        let st = &ep.state;
        let ok = st.usable(now);
        st.metrics.healthy.set(i64::from(ok));
        if ok {
            usable.push(i as u32);
        } else if let Some(t) = st.blocked_until(now) {
            expires = expires.min(t);
        }
        if window > 0 && ok && st.ramp(now, window) < 1.0 {
            ramping = true;
            let from = st.ramp_from.load(Ordering::Relaxed);
            expires = expires.min(from + window);
        }
    }
    let threshold = usize::from(s.panic_threshold);
    let panic = usable.len() * 100 < threshold * eps.len();
    let candidates: Vec<u32> = if panic {
        (0..eps.len() as u32).collect()
    } else {
        usable
    };
    let mut is_candidate = vec![false; eps.len()];
    for &i in &candidates {
        is_candidate[i as usize] = true;
    }
    let schedule = if s.policy == Policy::LeastRequest {
        Box::new([]) as Box<[u32]>
    } else {
        let weights: Vec<u32> = candidates.iter().map(|&i| eps[i as usize].weight).collect();
        schedule::build(&candidates, &weights)
    };
    Snapshot {
        epoch,
        expires,
        ramping,
        panic,
        candidates: candidates.into_boxed_slice(),
        is_candidate: is_candidate.into_boxed_slice(),
        schedule,
    }
}

/// Slow start: a ramping endpoint is taken with probability equal to its ramp factor.
#[inline]
fn admit(ep: &Endpoint, rng: &mut Rng, ramp: Option<(u64, u64)>) -> bool {
    match ramp {
        Some((now, window)) => {
            let f = ep.state.ramp(now, window);
            f >= 1.0 || rng.unit() < f
        }
        None => true,
    }
}

fn from_schedule(
    snap: &Snapshot,
    eps: &[Endpoint],
    start: usize,
    tried: &Tried,
    rng: &mut Rng,
    ramp: Option<(u64, u64)>,
) -> Option<usize> {
    let s = &snap.schedule;
    let mut rejects = 0;
    for step in 0..s.len() {
        let i = s[(start + step) % s.len()] as usize;
        if tried.contains(i) {
            continue;
        }
        if rejects < MAX_RAMP_REJECTS && !admit(&eps[i], rng, ramp) {
            rejects += 1;
            continue;
        }
        return Some(i);
    }
    None
}

fn least_request(
    snap: &Snapshot,
    eps: &[Endpoint],
    tried: &Tried,
    rng: &mut Rng,
    ramp: Option<(u64, u64)>,
) -> Option<usize> {
    let c = &snap.candidates;
    let n = c.len();
    let score = |i: usize| {
        let ep = &eps[i];
        let mut w = f64::from(ep.weight);
        if let Some((now, window)) = ramp {
            w *= ep.state.ramp(now, window);
        }
        f64::from(ep.state.in_flight.load(Ordering::Relaxed) + 1) / w
    };
    // Two distinct candidates (when there are two).
    let ia = rng.below(n);
    let ib = if n > 1 {
        (ia + 1 + rng.below(n - 1)) % n
    } else {
        ia
    };
    let (a, b) = (c[ia] as usize, c[ib] as usize);
    match (tried.contains(a), tried.contains(b)) {
        (false, false) => Some(if score(b) < score(a) { b } else { a }),
        (false, true) => Some(a),
        (true, false) => Some(b),
        (true, true) => c
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| !tried.contains(i))
            .min_by(|&x, &y| score(x).total_cmp(&score(y))),
    }
}

/// A key's endpoint: its owner, or the next owners in table order that are candidates.
fn walk(m: &Maglev, snap: &Snapshot, key: u64, tried: &Tried) -> Option<usize> {
    (0..m.len())
        .map(|k| m.nth(key, k))
        .find(|&i| snap.is_candidate[i] && !tried.contains(i))
}

#[cfg(test)]
#[path = "balance/tests.rs"]
mod tests;
