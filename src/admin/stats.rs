//! `GET /admin/stats`: the numbers the status page shows, as one JSON document: config version
//! and reloads, listeners, each route's and BFF endpoint's last minute, upstream endpoints,
//! rate-limit policies, certificates and tracing.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::config::units::rfc3339;
use crate::gateway::Gateway;
use crate::metrics::Summary;
use crate::runtime::Runtime;

/// The whole document.
pub fn json(gateway: &Gateway) -> Value {
    let rt = gateway.runtime();
    let status = gateway.reload_status().borrow().clone();
    let (ok, failed) = rt.metrics.reload_counts();
    json!({
        "version": rt.version,
        "generation": gateway.generation(),
        "loaded_at": rfc3339(rt.loaded_at),
        "draining": gateway.is_draining(),
        "in_flight": rt.metrics.in_flight_now(),
        "reloads": {
            "succeeded": ok,
            "failed": failed,
            "last": {
                "at": rfc3339(status.at),
                "ok": status.errors.is_none(),
                "errors": status.errors.as_ref().map(super::errors_json),
            },
        },
        "listeners": listeners(&rt),
        "routes": rt.routes.routes().iter().map(|r| {
            let mut v = window(r.metrics.window().summary());
            v["id"] = json!(&*r.id);
            v["upstream"] = json!(r.upstream().map(|u| &*u.name));
            v
        }).collect::<Vec<_>>(),
        "bff_endpoints": bff_endpoints(&rt),
        "upstreams": crate::upstream::status::json(&rt.upstreams)["upstreams"].take(),
        "rate_limits": rt.rate_limits.values().map(|p| json!({
            "name": &*p.name,
            "keys": p.limiter().len(),
            "admitted": p.limiter().admitted(),
            "refused": p.limiter().limited(),
        })).collect::<Vec<_>>(),
        "certificates": certificates(&rt),
        "tracing": rt.tracing.as_ref().map(|t| json!({
            "otlp_endpoint": t.settings.otlp_endpoint.as_ref().map(|u| u.to_string()),
            "sample_ratio": t.settings.sample_ratio,
            "service_name": t.settings.service_name,
        })),
    })
}

/// A last-minute summary as JSON (rounded for reading).
fn window(s: Summary) -> Value {
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    json!({
        "requests": s.requests,
        "errors": s.errors,
        "rate": round(s.rate),
        "error_rate": round(s.error_rate),
        "p50_ms": round(s.p50_ms),
        "p99_ms": round(s.p99_ms),
    })
}

fn listeners(rt: &Runtime) -> Value {
    json!({
        "http": rt.server.listen.to_string(),
        "https": rt.tls.as_ref().map(|t| t.listen.to_string()),
        "admin": rt.server.admin_listen.map(|a| a.to_string()),
    })
}

fn bff_endpoints(rt: &Runtime) -> Vec<Value> {
    let mut out = Vec::new();
    for p in rt.bff.profiles.iter() {
        for e in p.endpoints.iter() {
            let mut v = window(e.metrics.window().summary());
            v["id"] = json!(&*e.id);
            v["profile"] = json!(&*p.name);
            v["method"] = json!(e.method.as_str());
            v["path"] = json!(e.path.as_str());
            v["parts"] = json!(e.parts.len());
            out.push(v);
        }
    }
    out
}

fn certificates(rt: &Runtime) -> Vec<Value> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let Some(tls) = &rt.tls else {
        return Vec::new();
    };
    tls.certificates
        .iter()
        .map(|c| {
            json!({
                "file": c.file.display().to_string(),
                "names": c.meta.dns_names,
                "not_after": c.meta.not_after,
                "days_left": (c.meta.not_after - now) / 86_400,
            })
        })
        .collect()
}
