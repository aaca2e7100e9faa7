//! `[upstreams.NAME.retry]` -> [`RetryPolicy`] and [`BudgetSettings`]. Rejected: attempts
//! over 10, a `per_try_timeout` not shorter than the timeout, `backoff.base` over
//! `backoff.max`, a budget ratio outside (0, 1], unknown `retry_on` words, and
//! `retriable-status` without `statuses`.

use std::time::Duration;

use super::{Backoff, BudgetSettings, DEFAULT_REPLAY_BUFFER, MAX_ATTEMPTS, RetryOn, RetryPolicy};
use crate::config::Diagnostics;
use crate::config::file::resilience::{BackoffFile, BudgetFile, RetryFile};

/// Compiles a retry table at `key` for an upstream whose requests may take `timeout`.
pub fn compile(
    d: &mut Diagnostics,
    r: &RetryFile,
    key: &str,
    timeout: Duration,
) -> (RetryPolicy, BudgetSettings) {
    let k = |name: &str| format!("{key}.{name}");
    let attempts = d.count_or(&r.attempts, &k("attempts"), (0, i64::from(MAX_ATTEMPTS)), 0) as u32;
    let on = retry_on(d, r, key);
    let statuses = statuses(d, r, key, on);
    let per_try_timeout = r.per_try_timeout.as_ref().and_then(|t| {
        let v = d.positive_duration_or(&Some(t.clone()), &k("per_try_timeout"), Duration::ZERO);
        if v >= timeout {
            d.error(
                t.span(),
                k("per_try_timeout"),
                format!("per_try_timeout ({v:?}) must be shorter than the timeout ({timeout:?})"),
            );
        }
        (!v.is_zero()).then_some(v)
    });
    let backoff = r
        .backoff
        .as_ref()
        .map(|b| backoff(d, b.get_ref(), b.span(), &k("backoff")))
        .unwrap_or_default();
    let budget = r
        .budget
        .as_ref()
        .map(|b| budget(d, b.get_ref(), &k("budget")))
        .unwrap_or_default();
    let replay_buffer = d.size_or(&r.replay_buffer, &k("replay_buffer"), DEFAULT_REPLAY_BUFFER);
    let policy = RetryPolicy {
        attempts,
        on,
        statuses,
        per_try_timeout,
        backoff,
        replay_buffer,
        expose_attempts: r.expose_attempts.unwrap_or(false),
    };
    (policy, budget)
}

fn retry_on(d: &mut Diagnostics, r: &RetryFile, key: &str) -> RetryOn {
    let Some(list) = &r.retry_on else {
        return RetryOn::CONNECT_FAILURE
            .with(RetryOn::RESET)
            .with(RetryOn::GATEWAY_ERROR);
    };
    let mut on = RetryOn::default();
    for (i, word) in list.get_ref().iter().enumerate() {
        match RetryOn::WORDS.iter().find(|(w, _)| *w == word.get_ref()) {
            Some((_, bit)) => on = on.with(*bit),
            None => {
                let words: Vec<&str> = RetryOn::WORDS.iter().map(|(w, _)| *w).collect();
                d.error(
                    word.span(),
                    format!("{key}.retry_on[{i}]"),
                    format!(
                        "unknown retry_on \"{}\"{} (use {})",
                        word.get_ref(),
                        crate::config::shape::suggestion(word.get_ref(), words.iter().copied()),
                        words.join(", ")
                    ),
                );
            }
        }
    }
    on
}

fn statuses(d: &mut Diagnostics, r: &RetryFile, key: &str, on: RetryOn) -> Box<[u16]> {
    let mut out = Vec::new();
    if let Some(list) = &r.statuses {
        for (i, s) in list.get_ref().iter().enumerate() {
            match u16::try_from(*s.get_ref()) {
                Ok(c) if (100..=599).contains(&c) => out.push(c),
                _ => d.error(
                    s.span(),
                    format!("{key}.statuses[{i}]"),
                    format!("status {} is not between 100 and 599", s.get_ref()),
                ),
            }
        }
    }
    if on.contains(RetryOn::RETRIABLE_STATUS) && r.statuses.is_none() {
        let span = r.retry_on.as_ref().map_or(0..0, |l| l.span());
        d.error(
            span,
            format!("{key}.statuses"),
            "retry_on \"retriable-status\" needs `statuses = [...]`",
        );
    }
    out.into()
}

fn backoff(
    d: &mut Diagnostics,
    b: &BackoffFile,
    span: std::ops::Range<usize>,
    key: &str,
) -> Backoff {
    let dflt = Backoff::default();
    let base = d.duration_or(&b.base, &format!("{key}.base"), dflt.base);
    let max = d.duration_or(&b.max, &format!("{key}.max"), dflt.max);
    if base > max {
        let at = b.base.as_ref().map_or(span, |t| t.span());
        d.error(
            at,
            format!("{key}.base"),
            format!("backoff.base ({base:?}) must not be longer than backoff.max ({max:?})"),
        );
    }
    Backoff { base, max }
}

fn budget(d: &mut Diagnostics, b: &BudgetFile, key: &str) -> BudgetSettings {
    let dflt = BudgetSettings::default();
    let ratio_ppm = match &b.ratio {
        None => dflt.ratio_ppm,
        Some(r) if *r.get_ref() > 0.0 && *r.get_ref() <= 1.0 => {
            (r.get_ref() * 1_000_000.0).round() as u32
        }
        Some(r) => {
            d.error(
                r.span(),
                format!("{key}.ratio"),
                format!("must be in (0, 1], got {}", r.get_ref()),
            );
            dflt.ratio_ppm
        }
    };
    let min_per_second = d.count_or(
        &b.min_per_second,
        &format!("{key}.min_per_second"),
        (0, 1_000_000),
        dflt.min_per_second as usize,
    ) as u32;
    BudgetSettings {
        ratio_ppm,
        min_per_second,
    }
}
