//! What runs once a compiled config starts serving: health checks started, endpoint changes logged.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Endpoint, Upstream, served};

/// Runs once a config serves (at start and after each reload): starts the health checks that
/// are not running yet and logs the endpoints each kept upstream gained or lost.
pub fn activate(
    previous: Option<&BTreeMap<Arc<str>, Arc<Upstream>>>,
    upstreams: &BTreeMap<Arc<str>, Arc<Upstream>>,
) {
    for (name, u) in upstreams {
        u.start_health_checks();
        if u.settings.health.is_none() {
            // Checks were removed: nothing would ever bring a failing endpoint back.
            u.endpoints()
                .endpoints
                .iter()
                .for_each(|e| e.state.forget_checks());
        }
        let Some(old) = previous.and_then(|p| p.get(name)) else {
            continue;
        };
        if Arc::ptr_eq(old, u) {
            continue;
        }
        let labels = |x: &Upstream| {
            let set = x.endpoints();
            set.endpoints
                .iter()
                .map(Endpoint::label)
                .collect::<Vec<_>>()
        };
        let (before, after) = (labels(old), labels(u));
        let (added, removed) = served::changes(&before, &after);
        if added != "-" || removed != "-" {
            tracing::info!(upstream = %name, added, removed, "upstream endpoints changed");
        }
    }
}
