//! `[upstreams.NAME.circuit]` -> [`CircuitSettings`].

use super::CircuitSettings;
use crate::config::Diagnostics;
use crate::config::file::resilience::CircuitFile;

/// Default of each limit.
pub const DEFAULT_LIMIT: u32 = 1024;

/// Compiles the circuit table at `key`.
pub fn compile(d: &mut Diagnostics, c: &CircuitFile, key: &str) -> CircuitSettings {
    let k = |name: &str| format!("{key}.{name}");
    let range = (1, 1_000_000);
    let dflt = DEFAULT_LIMIT as usize;
    let max_requests = d.count_or(&c.max_requests, &k("max_requests"), range, dflt) as u32;
    let max_pending = d.count_or(&c.max_pending, &k("max_pending"), range, dflt) as u32;
    let max_connections = d.count_or(&c.max_connections, &k("max_connections"), range, dflt) as u32;
    let min_limit = d.count_or(&c.min_limit, &k("min_limit"), range, 1) as u32;
    if let Some(m) = &c.min_limit {
        if min_limit > max_requests {
            d.error(
                m.span(),
                k("min_limit"),
                format!("min_limit ({min_limit}) must not be above max_requests ({max_requests})"),
            );
        }
        if c.adaptive != Some(true) {
            d.error(
                m.span(),
                k("min_limit"),
                "min_limit needs `adaptive = true`",
            );
        }
    }
    CircuitSettings {
        max_requests,
        max_pending,
        max_connections,
        adaptive: (c.adaptive == Some(true)).then_some(min_limit),
    }
}
