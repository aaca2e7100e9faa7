//! Serde mirror of an upstream's balancing and health keys: weighted endpoints, `lb`,
//! `hash_key`, `slow_start`, `[upstreams.NAME.health]` and `[upstreams.NAME.outlier]`.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::Text;

/// One entry of `endpoints`: `"host:port"` or `{ address = "host:port", weight = 3 }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFile {
    /// `host:port`, `http://host:port` or `https://host:port`.
    pub address: String,
    /// Relative share of traffic; default `1`.
    pub weight: Option<i64>,
}

impl EndpointFile {
    /// The address as written.
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// The table form, read with its own unknown-field check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightedFile {
    address: String,
    weight: Option<i64>,
}

impl<'de> Deserialize<'de> for EndpointFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EndpointVisitor;
        impl<'de> Visitor<'de> for EndpointVisitor {
            type Value = EndpointFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address \"host:port\" or a table { address, weight }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EndpointFile, E> {
                Ok(EndpointFile {
                    address: v.to_owned(),
                    weight: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EndpointFile, A::Error> {
                let w = WeightedFile::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(EndpointFile {
                    address: w.address,
                    weight: w.weight,
                })
            }
        }
        deserializer.deserialize_any(EndpointVisitor)
    }
}

/// `[upstreams.NAME.health]`: active health checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    /// Path checked on every endpoint, e.g. `/healthz`.
    pub path: Text,
    /// Time between checks of one endpoint (jittered ±10%); default `10s`.
    pub interval: Option<Text>,
    /// Time allowed for one check's answer; default `1s`.
    pub timeout: Option<Text>,
    /// Failed checks in a row that make a healthy endpoint unhealthy; default `3`.
    pub unhealthy_threshold: Option<Spanned<i64>>,
    /// Passed checks in a row that make an unhealthy endpoint healthy; default `2`.
    pub healthy_threshold: Option<Spanned<i64>>,
    /// Statuses that pass: `200`, `"204"` or ranges `"200-299"`; default `["200-299"]`.
    pub expected_statuses: Option<Spanned<Vec<Spanned<StatusFile>>>>,
    /// `Host` header of checks; default: the endpoint's.
    pub host: Option<Text>,
}

/// An expected status: a number or a string (`"200"`, `"200-299"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StatusFile {
    /// `200`.
    Code(i64),
    /// `"200"` or `"200-299"`.
    Text(String),
}

/// `[upstreams.NAME.outlier]`: passive ejection of failing endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierFile {
    /// 5xx answers and transport errors in a row that eject an endpoint; default `5`.
    pub consecutive_failures: Option<Spanned<i64>>,
    /// 502/503/504 answers and transport errors in a row that eject; default: not used.
    pub consecutive_gateway_errors: Option<Spanned<i64>>,
    /// First ejection's length, multiplied by the number of ejections; default `30s`.
    pub base_ejection: Option<Text>,
    /// Longest ejection; default `300s`.
    pub max_ejection: Option<Text>,
    /// Most endpoints ejected at once, in percent (one is always allowed); default `10`.
    pub max_ejected_percent: Option<Spanned<i64>>,
    /// Below this percentage of usable endpoints, balance over all of them; default `50`.
    pub panic_threshold: Option<Spanned<i64>>,
}
