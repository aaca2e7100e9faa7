//! `fault = {...}` of a route: file types → [`Fault`].

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use toml::Spanned;

use super::Fault;
use crate::config::Diagnostics;
use crate::config::file::traffic::FaultFile;
use crate::config::units::parse_duration;
use crate::metrics::Metrics;
use crate::route::chance::Chance;

/// The fault settings of route `route` (`key` is its key path, e.g. `routes[2]`).
pub fn compile(
    d: &mut Diagnostics,
    key: &str,
    route: &str,
    file: &Spanned<FaultFile>,
    metrics: &Metrics,
) -> Option<Box<Fault>> {
    let f = file.get_ref();
    let key = format!("{key}.fault");
    let before = d.errors.len();
    let delay = f
        .delay
        .as_ref()
        .and_then(|t| d.parse(t, format!("{key}.delay"), parse_duration));
    let delay_share = d.percent(&f.delay_percent, &format!("{key}.delay_percent"));
    let abort = f.abort_status.as_ref().and_then(|s| {
        let code = *s.get_ref();
        let status = u16::try_from(code)
            .ok()
            .filter(|c| (200..=599).contains(c))
            .and_then(|c| http::StatusCode::from_u16(c).ok());
        if status.is_none() {
            d.error(
                s.span(),
                format!("{key}.abort_status"),
                format!("must be a status between 200 and 599, got {code}"),
            );
        }
        status
    });
    let abort_share = d.percent(&f.abort_percent, &format!("{key}.abort_percent"));
    for (share, given, name, needs) in [
        (
            &f.delay_percent,
            f.delay.is_some(),
            "delay_percent",
            "delay",
        ),
        (
            &f.abort_percent,
            f.abort_status.is_some(),
            "abort_percent",
            "abort_status",
        ),
    ] {
        if let (Some(p), false) = (share, given) {
            d.error(
                p.span(),
                format!("{key}.{name}"),
                format!("`{name}` needs `{needs}`"),
            );
        }
    }
    let header_control = f.header_control.unwrap_or(false);
    if f.delay.is_none() && f.abort_status.is_none() && !header_control {
        d.error(
            file.span(),
            key.clone(),
            "needs `delay`, `abort_status` or `header_control = true`",
        );
    }
    if d.errors.len() > before {
        return None;
    }
    let family: Family<[(&'static str, String); 2], Counter> = metrics.family(
        "portico_fault_injected",
        "Faults injected, by route and kind (delay, abort)",
        Family::default,
    );
    let counter = |kind: &str| {
        family.get_or_create_owned(&[("route", route.to_owned()), ("kind", kind.to_owned())])
    };
    Some(Box::new(Fault {
        delay: delay.map(|d| (d, Chance::percent(delay_share.unwrap_or(100.0)))),
        abort: abort.map(|s| (s, Chance::percent(abort_share.unwrap_or(100.0)))),
        header_control,
        delayed: counter("delay"),
        aborted: counter("abort"),
    }))
}
