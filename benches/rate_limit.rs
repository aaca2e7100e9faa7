//! Cost of one rate-limit check: governor's keyed GCRA over the capped store, with one key and
//! with 1,000,000 keys present, and the whole per-request policy check (key digest from a
//! claim + GCRA).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use governor::clock::QuantaClock;
use http::HeaderMap;
use portico::config::units::Rate;
use portico::filter::auth::claims::ClaimPath;
use portico::filter::rate_limit::limiter::Limiter;
use portico::filter::rate_limit::{
    HeaderMode, KeyInput, KeyPart, OnMissing, Policy, PolicySettings,
};

/// A rate no bench loop can exhaust, so every check is an admitted one (the common case).
const COUNT: u32 = 1_000_000_000;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit");
    let one = Limiter::new(
        COUNT,
        Duration::from_secs(1),
        COUNT,
        2_000_000,
        QuantaClock::default(),
    );
    group.bench_function("check/one_key", |b| {
        b.iter(|| black_box(one.check(black_box(42))))
    });

    let many = Limiter::new(
        COUNT,
        Duration::from_secs(1),
        COUNT,
        2_000_000,
        QuantaClock::default(),
    );
    let spread = |k: u64| k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for k in 0..1_000_000u64 {
        many.check(spread(k));
    }
    assert_eq!(many.len(), 1_000_000);
    let mut k = 0u64;
    group.bench_function("check/1M_keys_present", |b| {
        b.iter(|| {
            k = (k + 7919) % 1_000_000;
            black_box(many.check(spread(k)))
        })
    });

    let policy = Policy::new(
        Arc::from("per_user"),
        PolicySettings {
            rate: Rate {
                count: COUNT,
                per: Duration::from_secs(1),
            },
            burst: COUNT,
            key: vec![KeyPart::Claim(ClaimPath::parse("sub").unwrap())],
            on_missing: OnMissing::Shared,
            max_keys: 100_000,
            headers: HeaderMode::OnLimit,
            scope: portico::filter::rate_limit::Scope::Local,
        },
    );
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), "user-1234567".into());
    let claims = Arc::new(claims);
    let headers = HeaderMap::new();
    let input = KeyInput {
        scope: "route",
        client_ip: "10.1.2.3".parse().unwrap(),
        headers: &headers,
        claims: Some(&claims),
        consumer: None,
    };
    group.bench_function("policy_check/claim_sub", |b| {
        b.iter(|| black_box(policy.check(black_box(&input)).is_ok()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
