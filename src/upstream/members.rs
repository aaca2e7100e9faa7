//! An upstream's endpoint set of one moment: the endpoints, their selector and their health
//! checkers. Swapped whole when a discovery source changes the set; endpoints that stay keep
//! their state (health, ejection, slow-start ramp, counts) and their checkers.

use std::collections::HashMap;
use std::sync::Arc;

use super::balance::Balancer;
use super::discovery::{Live, Source, Wanted};
use super::health::Checker;
use super::state::{Board, EndpointMetrics, EndpointState, Families};
use super::transport::Transport;
use super::{Endpoint, UpstreamSettings, host_header, label};

/// The endpoints of an upstream, as one request sees them.
pub struct Members {
    /// Static endpoints in config order, then discovered ones.
    pub endpoints: Vec<Endpoint>,
    /// Selection over `endpoints`.
    pub balancer: Balancer,
    /// Active checkers, one per endpoint (when checks are configured).
    pub(super) checkers: Vec<Arc<Checker>>,
    /// The discovery source's version this set was built from (0: static only).
    pub(super) version: u64,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.endpoints).finish()
    }
}

impl std::ops::Deref for Members {
    type Target = [Endpoint];
    fn deref(&self) -> &[Endpoint] {
        &self.endpoints
    }
}

impl Members {
    /// The selector.
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }
}

/// What building a set reads from its upstream.
pub(super) struct MemberEnv<'a> {
    pub name: &'a Arc<str>,
    pub settings: &'a UpstreamSettings,
    pub board: &'a Arc<Board>,
    pub families: Option<&'a Families>,
    pub transport: &'a Arc<Transport>,
    /// New endpoints ramp up under `slow_start`.
    pub ramp: bool,
}

/// The static endpoints followed by the source's (an address both list is taken once, static).
pub(super) fn wanted(settings: &UpstreamSettings, live: Option<&Live>) -> Vec<Wanted> {
    let mut out: Vec<Wanted> = settings
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, (scheme, authority))| Wanted {
            scheme: scheme.clone(),
            authority: authority.clone(),
            weight: settings.balance.weights.get(i).copied().unwrap_or(1),
            source: Source::Static,
        })
        .collect();
    if let Some(live) = live {
        for w in live.wanted() {
            if !out
                .iter()
                .any(|o| o.authority == w.authority && o.scheme == w.scheme)
            {
                out.push(w);
            }
        }
    }
    out
}

impl Members {
    /// A set of `wanted`; from `old` it keeps the state of endpoints still wanted and their
    /// checkers when the check settings and transport are unchanged.
    pub(super) fn build(
        env: &MemberEnv<'_>,
        wanted: Vec<Wanted>,
        old: Option<&Members>,
        version: u64,
    ) -> Members {
        // One pass over the old set (a discovered set of hundreds is rebuilt on every change).
        let by_label: HashMap<String, &Endpoint> = old
            .map(|p| p.endpoints.iter().map(|e| (e.label(), e)).collect())
            .unwrap_or_default();
        let endpoints: Vec<Endpoint> = wanted
            .into_iter()
            .map(|w| {
                let label = label(&w.scheme, &w.authority);
                let kept = by_label.get(&label);
                let state = match kept {
                    Some(old) => old.state.clone(),
                    None => {
                        let m = env.families.map_or_else(EndpointMetrics::detached, |f| {
                            EndpointMetrics::new(f, env.name, &label)
                        });
                        Arc::new(EndpointState::new(env.board.clone(), m, env.ramp))
                    }
                };
                // Connections opened under other transport settings are not reused.
                let pool = kept
                    .map(|o| o.pool.clone())
                    .filter(|p| p.owner() == env.transport.id())
                    .unwrap_or_else(|| env.transport.pool());
                Endpoint {
                    pool,
                    host_header: host_header(&w.scheme, &w.authority),
                    scheme: w.scheme,
                    authority: w.authority,
                    weight: w.weight,
                    state,
                    source: w.source,
                }
            })
            .collect();
        let checkers = match &env.settings.health {
            Some(h) => endpoints
                .iter()
                .map(|ep| {
                    let kept =
                        old.and_then(|p| p.checkers.iter().find(|c| c.same(ep, h, env.transport)));
                    kept.cloned().unwrap_or_else(|| {
                        let c = Checker::new(
                            env.name.clone(),
                            ep.clone(),
                            h.clone(),
                            env.transport.clone(),
                        );
                        Arc::new(c)
                    })
                })
                .collect(),
            None => Vec::new(),
        };
        let balancer = Balancer::new(env.settings.balance.clone(), env.board.clone(), &endpoints);
        Members {
            endpoints,
            balancer,
            checkers,
            version,
        }
    }
}
