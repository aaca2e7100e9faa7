//! The operator's view of upstreams (`GET /admin/upstreams`): per upstream its policy, and per
//! endpoint its weight, effective weight, health, ejection, in-flight and request counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::balance::HashKey;
use super::state::clock_ms;
use super::{Upstream, discovery};

/// `{"upstreams": [...]}` for every configured upstream.
pub fn json(upstreams: &BTreeMap<Arc<str>, Arc<Upstream>>) -> Value {
    json!({ "upstreams": upstreams.values().map(|u| upstream(u)).collect::<Vec<_>>() })
}

fn upstream(u: &Upstream) -> Value {
    let now = clock_ms();
    let set = u.endpoints();
    let b = set.balancer().settings();
    let window = b.slow_start.as_millis() as u64;
    let checks = u.settings.health.is_some();
    let endpoints: Vec<Value> = set
        .iter()
        .map(|ep| {
            let st = &ep.state;
            let health = match (checks, st.is_checked(), st.is_unhealthy()) {
                (false, ..) => "unchecked",
                (true, _, true) => "unhealthy",
                (true, true, false) => "healthy",
                (true, false, false) => "pending",
            };
            let ejected_until = st.ejected_until(now).map(|t| unix_seconds(t, now));
            let effective = f64::from(ep.weight) * st.ramp(now, window);
            json!({
                "address": ep.label(),
                "source": ep.source.as_str(),
                "weight": ep.weight,
                "effective_weight": (effective * 100.0).round() / 100.0,
                "health": health,
                "usable": st.usable(now),
                "ejected_until": ejected_until,
                "ejections": st.ejection_count(),
                "in_flight": st.in_flight.load(Ordering::Relaxed),
                "requests": st.requests.load(Ordering::Relaxed),
                "failures": st.failures.load(Ordering::Relaxed),
            })
        })
        .collect();
    json!({
        "name": &*u.name,
        "policy": b.policy.as_str(),
        "hash_key": b.hash_key.as_ref().map(describe),
        "slow_start_ms": window,
        "panic_threshold": b.panic_threshold,
        "panic": set.balancer().in_panic(),
        "discovery": u.live().map(discovery::Live::kind),
        "health_checks": checks,
        "endpoints": endpoints,
    })
}

/// A time on the process clock as Unix seconds.
fn unix_seconds(at_ms: u64, now_ms: u64) -> f64 {
    let wall = SystemTime::now() + Duration::from_millis(at_ms.saturating_sub(now_ms));
    let secs = wall
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    (secs * 1000.0).round() / 1000.0
}

/// The config spelling of a hash key.
pub fn describe(k: &HashKey) -> String {
    match k {
        HashKey::Header(h) => format!("header:{h}"),
        HashKey::Cookie(c) => format!("cookie:{c}"),
        HashKey::Claim(p) => format!("claim:{}", p.as_str()),
        HashKey::Ip => "ip".into(),
        HashKey::Path => "path".into(),
    }
}
