//! `mirror = {...}` of a route: file types → [`Mirror`].

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::Semaphore;
use toml::Spanned;

use super::{Counts, Mirror};
use crate::config::Diagnostics;
use crate::config::file::traffic::MirrorFile;
use crate::route::chance::Chance;
use crate::route::compile::{Context, upstream_ref};

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
    cx: Context<'_>,
) -> Option<Box<Mirror>> {
    let m = file.get_ref();
    let key = format!("{key}.mirror");
    let before = d.errors.len();
    let shadow = upstream_ref(d, &m.upstream, &format!("{key}.upstream"), route, cx);
    let percent = d.percent(&m.percent, &format!("{key}.percent"));
    let max_body = d.size_or(&m.max_body, &format!("{key}.max_body"), DEFAULT_MAX_BODY);
    let timeout = d.positive_duration_or(&m.timeout, &format!("{key}.timeout"), DEFAULT_TIMEOUT);
    let max_concurrent = d.count_or(
        &m.max_concurrent,
        &format!("{key}.max_concurrent"),
        (1, 100_000),
        DEFAULT_MAX_CONCURRENT,
    );
    if d.errors.len() > before {
        return None;
    }
    let family: Family<[(&'static str, String); 2], Counter> = cx.metrics.family(
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
        chance: Chance::percent(percent.unwrap_or(100.0)),
        max_body,
        timeout,
        slots,
        counts,
    }))
}
