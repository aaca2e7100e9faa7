//! Compiling `[cluster]` into a [`Cluster`]: the URL, password, TLS roots and timeouts are
//! checked here, so `portico check` rejects a bad store before anything connects.

use std::sync::Arc;
use std::time::Duration;

use redis::IntoConnectionInfo;
use toml::Spanned;

use super::{Cluster, ClusterSettings};
use crate::config::diag::Diagnostics;
use crate::config::file::Text;
use crate::config::file::cluster::ClusterFile;
use crate::config::units::parse_duration;

const KEY: &str = "cluster";

/// Compiles `[cluster]`; the previous store (and its connection) is kept when its settings did
/// not change. `None` when absent or wrong (errors recorded in `d`).
pub fn compile(
    d: &mut Diagnostics,
    file: Option<&Spanned<ClusterFile>>,
    previous: Option<&Arc<Cluster>>,
    metrics: &crate::metrics::Metrics,
) -> Option<Arc<Cluster>> {
    let f = file?.get_ref();
    let before = d.errors.len();
    let url = d.parse(&f.redis, format!("{KEY}.redis"), check_url);
    let password = f.password_env.as_ref().and_then(|e| password(d, e));
    let ca_file = f
        .ca_file
        .as_ref()
        .map(|c| crate::config::resolve(&d.source.path, c.get_ref()));
    let ca_pem = f
        .ca_file
        .as_ref()
        .zip(ca_file.as_ref())
        .and_then(|(c, path)| {
            std::fs::read(path)
                .map_err(|e| {
                    d.error(
                        c.span(),
                        format!("{KEY}.ca_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })
                .ok()
        });
    if let (Some(c), Some(u)) = (&f.ca_file, &url) {
        if !u.starts_with("rediss://") {
            d.error(
                c.span(),
                format!("{KEY}.ca_file"),
                "only a rediss:// (TLS) store uses ca_file",
            );
        }
    }
    let settings = ClusterSettings {
        url: url.unwrap_or_default(),
        password,
        timeout: duration(d, &f.timeout, "timeout", Duration::from_millis(20)),
        instances: count(d, &f.instances, "instances", 10_000).map(|n| n as u32),
        key_prefix: f
            .key_prefix
            .as_ref()
            .map_or_else(|| "portico:".to_string(), |p| p.get_ref().clone()),
        ca_file,
        ca_pem,
        error_threshold: count(d, &f.error_threshold, "error_threshold", 1_000).unwrap_or(3) as u32,
        backoff: duration(d, &f.backoff, "backoff", Duration::from_secs(2)),
    };
    if settings.timeout.is_zero() {
        d.error(
            f.timeout.as_ref().map_or(0..0, |t| t.span()),
            format!("{KEY}.timeout"),
            "must be more than 0",
        );
    }
    if d.errors.len() > before {
        return None;
    }
    if let Some(p) = previous.filter(|p| p.settings == settings) {
        return Some(p.clone());
    }
    match client(&settings) {
        Ok(client) => Some(Arc::new(Cluster::new(settings, client, metrics))),
        Err(e) => {
            let (span, key) = match &f.ca_file {
                Some(c) => (c.span(), "ca_file"),
                None => (f.redis.span(), "redis"),
            };
            d.error(span, format!("{KEY}.{key}"), e);
            None
        }
    }
}

fn check_url(url: &str) -> Result<String, String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(format!(
            "bad store URL \"{}\": expected redis://HOST:PORT or rediss://HOST:PORT",
            super::redact(url)
        ));
    }
    url.into_connection_info()
        .map_err(|e| format!("bad store URL \"{}\": {e}", super::redact(url)))?;
    Ok(url.to_string())
}

fn client(s: &ClusterSettings) -> Result<redis::Client, String> {
    let mut info = s
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| e.to_string())?;
    if let Some(pw) = &s.password {
        let redis = info.redis_settings().clone().set_password(pw);
        info = info.set_redis_settings(redis);
    }
    if !s.url.starts_with("rediss://") {
        return redis::Client::open(info).map_err(|e| e.to_string());
    }
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: s.ca_pem.clone(),
    };
    redis::Client::build_with_tls(info, certs).map_err(|e| format!("bad TLS settings: {e}"))
}

fn password(d: &mut Diagnostics, env: &Text) -> Option<String> {
    let name = env.get_ref();
    let key = format!("{KEY}.password_env");
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        Ok(_) | Err(std::env::VarError::NotPresent) => {
            d.error(
                env.span(),
                key,
                format!("environment variable {name} is not set or empty; set it to the Redis password, or remove password_env"),
            );
            None
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            d.error(
                env.span(),
                key,
                format!("environment variable {name} is not valid UTF-8"),
            );
            None
        }
    }
}

fn duration(d: &mut Diagnostics, v: &Option<Text>, name: &str, default: Duration) -> Duration {
    v.as_ref()
        .and_then(|t| d.parse(t, format!("{KEY}.{name}"), parse_duration))
        .unwrap_or(default)
}

fn count(d: &mut Diagnostics, v: &Option<Spanned<i64>>, name: &str, max: i64) -> Option<i64> {
    let v = v.as_ref()?;
    if (1..=max).contains(v.get_ref()) {
        return Some(*v.get_ref());
    }
    d.error(
        v.span(),
        format!("{KEY}.{name}"),
        format!("must be between 1 and {max}, got {}", v.get_ref()),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_url("rediss://cache.internal:6380/2").is_ok());
        assert!(check_url("http://127.0.0.1:6379").is_err());
        assert!(check_url("redis://:secret@").is_err());
        let e = check_url("memcache://u:secret@h").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
