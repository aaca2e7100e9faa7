//! Cost of choosing an endpoint (`Upstream::select`) per policy at 3, 30 and 300 endpoints,
//! all healthy, no slow-start ramp; plus hashing a `header:NAME` consistent-hash key.
//! Target: < 100 ns per pick at 300 endpoints for every policy.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use portico::upstream::balance::{BalanceSettings, HashKey, KeySource, Policy, Tried, hash};
use portico::upstream::{Upstream, UpstreamSettings, parse_endpoint};

fn upstream(policy: Policy, n: usize) -> Upstream {
    let endpoints = (0..n)
        .map(|i| parse_endpoint(&format!("10.0.{}.{}:8080", i / 250, i % 250)).unwrap())
        .collect();
    let settings = UpstreamSettings {
        endpoints,
        timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(2),
        fail_timeout: Duration::from_secs(10),
        max_idle_per_endpoint: 16,
        pool_idle_timeout: Duration::from_secs(90),
        tls: Default::default(),
        balance: BalanceSettings {
            policy,
            hash_key: (policy == Policy::ConsistentHash)
                .then(|| HashKey::Header("x-user".parse().unwrap())),
            // Mixed weights, so round robin and random run over a weighted schedule.
            weights: (0..n).map(|i| 1 + (i % 3) as u32).collect(),
            ..BalanceSettings::default()
        },
        health: None,
        outlier: None,
        protocol: Default::default(),
        max_concurrent_streams: 100,
        resilience: Default::default(),
        discovery: None,
    };
    Upstream::new(Arc::from("bench"), settings)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("balance");
    let policies = [
        ("round_robin", Policy::RoundRobin),
        ("least_request", Policy::LeastRequest),
        ("random", Policy::Random),
        ("consistent_hash", Policy::ConsistentHash),
    ];
    for (name, policy) in policies {
        for n in [3, 30, 300] {
            let u = upstream(policy, n);
            let tried = Tried::default();
            let mut k = 0u64;
            group.bench_function(format!("pick/{name}/{n}"), |b| {
                b.iter(|| {
                    k = k.wrapping_add(1);
                    let key = (policy == Policy::ConsistentHash).then(|| hash::mix(k));
                    black_box(u.select(black_box(key), &tried))
                })
            });
        }
    }
    let u = upstream(Policy::ConsistentHash, 300);
    let mut headers = HeaderMap::new();
    headers.insert("x-user", "user-123456".parse().unwrap());
    let src = KeySource {
        headers: &headers,
        path: "/api/users/1",
        peer: "127.0.0.1".parse().unwrap(),
        trusted: &[],
        claims: None,
    };
    group.bench_function("key/header", |b| {
        b.iter(|| black_box(u.key(black_box(&src))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
