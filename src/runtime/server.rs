//! `[server]` and `[limits]` -> the process settings: listeners, workers, trusted proxies,
//! shutdown grace, the admin token and file watching; client protection limits.

use std::net::SocketAddr;
use std::time::Duration;

use super::lifecycle;
use super::{Limits, ServerSettings};
use crate::config::Diagnostics;
use crate::config::file::{LimitsFile, ServerFile};
use crate::net::Cidr;

/// Listener addresses given on the command line (`--listen`, `--admin-listen`,
/// `--health-listen`, or their `PORTICO_*` environment variables): they win over the file at
/// every load, so a reload never sees them as a changed restart-only key.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenOverrides {
    /// Replaces `server.listen`.
    pub listen: Option<SocketAddr>,
    /// Replaces `server.admin_listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Replaces `server.health_listen`.
    pub health_listen: Option<SocketAddr>,
}

static OVERRIDES: std::sync::OnceLock<ListenOverrides> = std::sync::OnceLock::new();

/// Sets the process's listener overrides once, before the first load (the `portico` binary).
pub fn set_listen_overrides(o: ListenOverrides) {
    let _ = OVERRIDES.set(o);
}

/// Compiles `[server]`; `None` only when `listen` is bad (reported).
pub fn settings(d: &mut Diagnostics, s: &ServerFile) -> Option<ServerSettings> {
    let mut settings = file_settings(d, s)?;
    if let Some(o) = OVERRIDES.get() {
        settings.listen = o.listen.unwrap_or(settings.listen);
        settings.admin_listen = o.admin_listen.or(settings.admin_listen);
        settings.health_listen = o.health_listen.or(settings.health_listen);
    }
    Some(settings)
}

fn file_settings(d: &mut Diagnostics, s: &ServerFile) -> Option<ServerSettings> {
    let listen = match &s.listen {
        Some(v) => d.addr(v, "server.listen"),
        None => Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
    };
    let admin_listen = match &s.admin_listen {
        // An empty string turns the admin listener off.
        Some(v) if v.get_ref().is_empty() => None,
        Some(v) => d.addr(v, "server.admin_listen"),
        None => Some(lifecycle::default_admin(listen)),
    };
    let workers = s
        .workers
        .as_ref()
        .map(|_| d.count_or(&s.workers, "server.workers", (1, 1024), 1));
    let trusted_proxies = s
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, t)| d.parse(t, format!("server.trusted_proxies[{i}]"), Cidr::parse))
        .collect();
    let shutdown_grace = d.duration_or(
        &s.shutdown_grace,
        "server.shutdown_grace",
        Duration::from_secs(30),
    );
    let drain_delay = d.duration_or(&s.drain_delay, "server.drain_delay", Duration::from_secs(5));
    let health_listen = match &s.health_listen {
        Some(v) if v.get_ref().is_empty() => None,
        Some(v) => d.addr(v, "server.health_listen"),
        None => None,
    };
    Some(ServerSettings {
        listen: listen?,
        drain_delay,
        health_listen,
        admin_listen,
        workers,
        trusted_proxies,
        shutdown_grace,
        admin_token: lifecycle::admin_token(d, &s.admin_token_env),
        watch: lifecycle::watch(d, s),
        underscores_in_headers: s
            .underscores_in_headers
            .as_ref()
            .and_then(|v| {
                d.parse(
                    v,
                    "server.underscores_in_headers",
                    crate::filter::headers::underscore::UnderscorePolicy::parse,
                )
            })
            .unwrap_or_default(),
        encoded_slashes: s
            .encoded_slashes
            .as_ref()
            .and_then(|v| {
                d.parse(
                    v,
                    "server.encoded_slashes",
                    crate::net::path::EncodedSlashes::parse,
                )
            })
            .unwrap_or_default(),
    })
}

/// Compiles `[limits]`; absent keys take [`Limits::default`].
pub fn limits(d: &mut Diagnostics, l: &LimitsFile) -> Limits {
    let def = Limits::default();
    let max_header_bytes = d.size_or(
        &l.max_header_bytes,
        "limits.max_header_bytes",
        def.max_header_bytes as u64,
    );
    if let Some(v) = &l.max_header_bytes {
        if max_header_bytes < 8192 {
            // hyper's HTTP/1 read buffer cannot be smaller, so a lower cap could not hold.
            d.error(
                v.span(),
                "limits.max_header_bytes",
                "must be at least 8KiB (hyper's smallest read buffer)",
            );
        }
    }
    Limits {
        header_read_timeout: d.duration_or(
            &l.header_read_timeout,
            "limits.header_read_timeout",
            def.header_read_timeout,
        ),
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
        max_headers: d.count_or(
            &l.max_headers,
            "limits.max_headers",
            (1, 10_000),
            def.max_headers,
        ),
        max_body_bytes: d.size_or(
            &l.max_body_bytes,
            "limits.max_body_bytes",
            def.max_body_bytes,
        ),
        idle_timeout: d.duration_or(&l.idle_timeout, "limits.idle_timeout", def.idle_timeout),
        keepalive_timeout: d.duration_or(
            &l.keepalive_timeout,
            "limits.keepalive_timeout",
            def.keepalive_timeout,
        ),
        max_connections: d.count_or(
            &l.max_connections,
            "limits.max_connections",
            (1, 10_000_000),
            def.max_connections,
        ),
        tunnel_idle_timeout: d.duration_or(
            &l.tunnel_idle_timeout,
            "limits.tunnel_idle_timeout",
            def.tunnel_idle_timeout,
        ),
    }
}
