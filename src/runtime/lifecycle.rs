//! Settings of the process lifecycle: the admin listener and its token, file watching, and the
//! keys a reload cannot change (listener addresses, worker threads: those need a restart).

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Limits, Runtime, ServerSettings};
use crate::config::Diagnostics;
use crate::config::file::{GatewayFile, ServerFile, Text};
use crate::config::units::parse_duration;

/// Default admin listener address.
pub const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9901);

/// The admin listener when `server.admin_listen` is absent: `127.0.0.1:9901`, except that a
/// gateway whose `listen` asks for an ephemeral port (`:0`) also gets an ephemeral admin port,
/// so throwaway gateways (tests, side-by-side runs) never fight over 9901.
pub fn default_admin(listen: Option<SocketAddr>) -> SocketAddr {
    match listen {
        Some(l) if l.port() == 0 => SocketAddr::new(DEFAULT_ADMIN.ip(), 0),
        _ => DEFAULT_ADMIN,
    }
}

/// The admin API's bearer token, kept only as a SHA-256 digest (never printed, never compared
/// byte by byte in variable time).
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken([u8; 32]);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Wraps a token's text.
    pub fn new(token: &str) -> AdminToken {
        AdminToken(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether an `Authorization` header value carries this token as `Bearer`.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some(presented) = value
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
            .map(|_| value[7..].trim_ascii())
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        // Digests have a fixed length, so this fold takes the same time for every guess.
        digest
            .iter()
            .zip(self.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// File watching settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSettings {
    /// Reload when a source file changes.
    pub enabled: bool,
    /// Quiet time after the last file event before reloading (a burst of events gives one reload).
    pub debounce: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            enabled: true,
            debounce: Duration::from_millis(100),
        }
    }
}

/// Reads the admin token from the environment variable `admin_token_env` names. A named but
/// unset or empty variable is an error: an admin API meant to be protected must not open up.
pub fn admin_token(d: &mut Diagnostics, env: &Option<Text>) -> Option<AdminToken> {
    let env = env.as_ref()?;
    let name = env.get_ref();
    if name.is_empty() || name.contains(['=', '\0']) {
        d.error(
            env.span(),
            "server.admin_token_env",
            format!("bad environment variable name \"{name}\""),
        );
        return None;
    }
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Some(AdminToken::new(v.trim())),
        Ok(_) | Err(std::env::VarError::NotPresent) => {
            d.error(
                env.span(),
                "server.admin_token_env",
                format!(
                    "environment variable {name} is not set or empty; set it to the admin bearer token, or remove admin_token_env"
                ),
            );
            None
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            d.error(
                env.span(),
                "server.admin_token_env",
                format!("environment variable {name} is not valid UTF-8"),
            );
            None
        }
    }
}

/// `server.watch` and `server.reload_debounce`.
pub fn watch(d: &mut Diagnostics, s: &ServerFile) -> WatchSettings {
    let mut w = WatchSettings::default();
    if let Some(enabled) = s.watch {
        w.enabled = enabled;
    }
    if let Some(v) = &s.reload_debounce {
        if let Some(t) = d.parse(v, "server.reload_debounce", parse_duration) {
            if t < Duration::from_millis(10) || t > Duration::from_secs(10) {
                d.error(
                    v.span(),
                    "server.reload_debounce",
                    "must be between 10ms and 10s",
                );
            } else {
                w.debounce = t;
            }
        }
    }
    w
}

/// Checks of the compiled `[server]`: the admin listener must not share the public one, and a
/// reload must not change what only a restart can (listener addresses, worker threads, the
/// connection cap that sizes each listener's accept limit).
pub fn check_restart_only(
    d: &mut Diagnostics,
    file: &GatewayFile,
    server: &ServerSettings,
    limits: &Limits,
    tls_listen: Option<SocketAddr>,
    previous: Option<&Runtime>,
) {
    let s = &file.server;
    let span = |v: &Option<Text>| v.as_ref().map(|t| t.span());
    if let Some(admin) = server.admin_listen {
        if admin == server.listen && admin.port() != 0 {
            d.error(
                span(&s.admin_listen).unwrap_or(0..0),
                "server.admin_listen",
                format!(
                    "{admin} is also server.listen: the admin API is never served on a public listener"
                ),
            );
        }
    }
    if let (Some(admin), Some(tls)) = (server.admin_listen, tls_listen) {
        if admin == tls && admin.port() != 0 {
            d.error(
                span(&s.admin_listen).unwrap_or(0..0),
                "server.admin_listen",
                format!("{admin} is also server.tls.listen: the admin API is never served on a public listener"),
            );
        }
    }
    let Some(prev) = previous.map(|p| &p.server) else {
        return;
    };
    restart_only(
        d,
        "server.listen",
        span(&s.listen),
        prev.listen,
        server.listen,
    );
    restart_only(
        d,
        "server.admin_listen",
        span(&s.admin_listen),
        Shown(prev.admin_listen),
        Shown(server.admin_listen),
    );
    restart_only(
        d,
        "server.health_listen",
        span(&s.health_listen),
        Shown(prev.health_listen),
        Shown(server.health_listen),
    );
    restart_only(
        d,
        "server.workers",
        s.workers.as_ref().map(|w| w.span()),
        Shown(prev.workers),
        Shown(server.workers),
    );
    let tls_before = previous.and_then(|p| p.tls.as_ref()).map(|t| t.listen);
    // A [server.tls] that failed to compile has already reported why.
    let tls_after = if s.tls.is_some() && tls_listen.is_none() {
        tls_before
    } else {
        tls_listen
    };
    restart_only(
        d,
        "server.tls.listen",
        s.tls.as_ref().map(|t| t.get_ref().listen.span()),
        Shown(tls_before),
        Shown(tls_after),
    );
    if let Some(p) = previous {
        restart_only(
            d,
            "limits.max_connections",
            file.limits.max_connections.as_ref().map(|m| m.span()),
            p.limits.max_connections,
            limits.max_connections,
        );
    }
}

/// Refuses a reload that changes a setting only a restart applies. Other listeners (e.g. TLS)
/// call this for their own addresses.
pub fn restart_only<T: PartialEq + Display>(
    d: &mut Diagnostics,
    key: &str,
    span: Option<Range<usize>>,
    before: T,
    after: T,
) {
    if before != after {
        d.error(
            span.unwrap_or(0..0),
            key,
            format!(
                "changed from {before} to {after}, which needs a restart: the running gateway keeps its current config (restart it to apply this file)"
            ),
        );
    }
}

/// Displays an optional setting (`none` when absent).
#[derive(PartialEq)]
pub struct Shown<T>(pub Option<T>);

impl<T: Display> Display for Shown<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check() {
        let t = AdminToken::new("s3cret");
        assert!(t.accepts(Some(b"Bearer s3cret")));
        assert!(t.accepts(Some(b"bearer  s3cret ")));
        assert!(!t.accepts(Some(b"Bearer s3cre")));
        assert!(!t.accepts(Some(b"Basic s3cret")));
        assert!(!t.accepts(Some(b"Bearer")));
        assert!(!t.accepts(None));
        assert_eq!(format!("{t:?}"), "AdminToken(<redacted>)");
    }

    #[test]
    fn ephemeral_listen_gets_ephemeral_admin() {
        assert_eq!(default_admin("127.0.0.1:0".parse().ok()).port(), 0);
        assert_eq!(default_admin("0.0.0.0:8080".parse().ok()), DEFAULT_ADMIN);
    }
}
