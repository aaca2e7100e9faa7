//! `mirror = {...}` of a route: file types → [`Mirror`].

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::Semaphore;
use toml::Spanned;

use super::{Counts, Mirror};
use crate::config::diag::Diagnostics;
use crate::config::file::traffic::MirrorFile;
use crate::config::units::{parse_duration, parse_size};
use crate::route::chance::Chance;
use crate::route::fault::compile::percent;
use crate::route::split::compile::{Refs, upstream};

/// Default `max_body`.
const DEFAULT_MAX_BODY: u64 = 64 * 1024;
/// Default `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default `max_concurrent`.
const DEFAULT_MAX_CONCURRENT: usize = 64;

/// The mirror of route `route` (`key` is its key path, e.g. `routes[2]`). A reload makes fresh
/// slots: copies still in flight hold the old config's, so for one shadow timeout after a reload
/// up to twice the cap can be in flight.
pub fn compile(
    d: &mut Diagnostics,
    key: &str,
    route: &str,
    file: &Spanned<MirrorFile>,
    refs: Refs<'_>,
) -> Option<Box<Mirror>> {
    let m = file.get_ref();
    let key = format!("{key}.mirror");
    let before = d.errors.len();
    let shadow = upstream(d, &m.upstream, &format!("{key}.upstream"), route, refs);
    let chance =
        percent(d, &m.percent, &format!("{key}.percent")).unwrap_or(Chance::percent(100.0));
    let max_body = m
        .max_body
        .as_ref()
        .and_then(|t| d.parse(t, format!("{key}.max_body"), parse_size))
        .unwrap_or(DEFAULT_MAX_BODY);
    let timeout = m
        .timeout
        .as_ref()
        .and_then(|t| d.parse(t, format!("{key}.timeout"), parse_duration))
        .unwrap_or(DEFAULT_TIMEOUT);
    let max_concurrent = match &m.max_concurrent {
        None => DEFAULT_MAX_CONCURRENT,
        Some(n) if (1..=100_000).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => {
            d.error(
                n.span(),
                format!("{key}.max_concurrent"),
                format!("must be between 1 and 100000, got {}", n.get_ref()),
            );
            DEFAULT_MAX_CONCURRENT
        }
    };
    if d.errors.len() > before {
        return None;
    }
    let family: Family<[(&'static str, String); 2], Counter> = refs.metrics.family(
        "portico_mirror_requests",
        "Mirrored request copies, by route and outcome (sent, dropped_capacity, dropped_body, error)",
        Family::default,
    );
    let counter = |outcome: &str| {
        family.get_or_create_owned(&[("route", route.to_owned()), ("outcome", outcome.to_owned())])
    };
    let counts = Arc::new(Counts {
        sent: counter("sent"),
        dropped_capacity: counter("dropped_capacity"),
        dropped_body: counter("dropped_body"),
        error: counter("error"),
    });
    let slots = Arc::new(Semaphore::new(max_concurrent));
    Some(Box::new(Mirror {
        upstream: shadow?,
        chance,
        max_body,
        timeout,
        slots,
        counts,
    }))
}
