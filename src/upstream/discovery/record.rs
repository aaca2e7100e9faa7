//! The instance record: `{"address": "127.0.0.1:7001", "ttl": "10s", "weight": 1,
//! "metadata": {...}}`, the body of a registry `PUT` and the value of an etcd key.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::registry::Instance;
use crate::config::units::parse_duration;

/// The `ttl` when a record has none.
const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// A record -> an instance expiring `ttl` from now; the message says what is wrong.
pub fn parse(body: &[u8]) -> Result<Instance, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("the body must be a JSON object")?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "address" | "ttl" | "weight" | "metadata") {
            return Err(format!(
                "unknown field {k:?} (address, ttl, weight, metadata)"
            ));
        }
    }
    let addr = obj
        .get("address")
        .and_then(Value::as_str)
        .ok_or("`address` (host:port) is required")?;
    let (scheme, authority) = crate::upstream::parse_endpoint(addr)?;
    let ttl = match obj.get("ttl") {
        None => DEFAULT_TTL,
        Some(Value::String(t)) => parse_duration(t).map_err(|e| format!("ttl: {e}"))?,
        Some(_) => return Err("`ttl` is a duration text like \"10s\"".into()),
    };
    if ttl.is_zero() || ttl > Duration::from_secs(86_400) {
        return Err("`ttl` must be more than 0 and at most 24h".into());
    }
    let weight = match obj.get("weight") {
        None => 1,
        Some(w) => w
            .as_u64()
            .filter(|w| (1..=1000).contains(w))
            .ok_or("`weight` must be a whole number between 1 and 1000")? as u32,
    };
    let metadata = obj.get("metadata").cloned().unwrap_or(Value::Null);
    if !(metadata.is_null() || metadata.is_object()) {
        return Err("`metadata` must be a JSON object".into());
    }
    Ok(Instance {
        scheme,
        authority,
        weight,
        metadata,
        expires_at: SystemTime::now() + ttl,
    })
}

/// The `address` of a record: `host:port`, or `https://host:port`.
pub fn address(i: &Instance) -> String {
    if i.scheme == http::uri::Scheme::HTTPS {
        format!("https://{}", i.authority)
    } else {
        i.authority.to_string()
    }
}
