//! Deterministic (fixed-seed) tests of the selection algorithms over in-memory endpoints.

use std::sync::atomic::Ordering;

use super::*;
use crate::upstream::state::{EndpointMetrics, EndpointState};

fn endpoints(weights: &[u32], board: &Arc<Board>) -> Vec<Endpoint> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let authority: http::uri::Authority = format!("10.0.0.{i}:80").parse().unwrap();
            Endpoint {
                scheme: http::uri::Scheme::HTTP,
                host_header: http::HeaderValue::from_str(authority.as_str()).unwrap(),
                authority,
                weight: w,
                state: Arc::new(EndpointState::new(
                    board.clone(),
                    EndpointMetrics::detached(),
                    false,
                )),
                source: crate::upstream::discovery::Source::Static,
                pool: std::sync::Arc::new(crate::upstream::transport::Pool::new(
                    0,
                    1,
                    std::time::Duration::from_secs(1),
                )),
            }
        })
        .collect()
}

fn settings(policy: Policy) -> BalanceSettings {
    BalanceSettings {
        policy,
        ..BalanceSettings::default()
    }
}

fn setup(policy: Policy, weights: &[u32]) -> (Balancer, Vec<Endpoint>, Arc<Board>) {
    let board = Arc::new(Board::default());
    let eps = endpoints(weights, &board);
    let b = Balancer::new(settings(policy), board.clone(), &eps);
    (b, eps, board)
}

fn pick(b: &Balancer, eps: &[Endpoint], key: Option<u64>, rng: &mut Rng) -> usize {
    b.pick(eps, key, &Tried::default(), rng).unwrap().index
}

#[test]
fn round_robin_weights_three_to_one_interleaved() {
    let (b, eps, _) = setup(Policy::RoundRobin, &[3, 1]);
    let mut rng = Rng::seeded(1);
    let seq: Vec<usize> = (0..400).map(|_| pick(&b, &eps, None, &mut rng)).collect();
    assert_eq!(seq.iter().filter(|&&i| i == 0).count(), 300);
    // Interleaved: never more than three of endpoint 0 in a row.
    assert!(seq.windows(4).all(|w| w.contains(&1)), "{:?}", &seq[..16]);
}

#[test]
fn random_follows_weights() {
    let (b, eps, _) = setup(Policy::Random, &[1, 2, 1]);
    let mut rng = Rng::seeded(2);
    let mut counts = [0usize; 3];
    for _ in 0..40_000 {
        counts[pick(&b, &eps, None, &mut rng)] += 1;
    }
    assert!((19_000..21_000).contains(&counts[1]), "{counts:?}");
    assert!((9_000..11_000).contains(&counts[0]), "{counts:?}");
}

#[test]
fn least_request_prefers_idle_endpoints() {
    let (b, eps, _) = setup(Policy::LeastRequest, &[1, 1, 1, 1]);
    eps[0].state.in_flight.store(50, Ordering::Relaxed);
    let mut rng = Rng::seeded(3);
    let mut busy = 0;
    for _ in 0..10_000 {
        if pick(&b, &eps, None, &mut rng) == 0 {
            busy += 1;
        }
    }
    // Endpoint 0 is chosen only when both random choices land on it: never, as they differ.
    assert_eq!(busy, 0);
    // Weight-aware: with equal load, weight 3 wins over weight 1.
    let (b, eps, _) = setup(Policy::LeastRequest, &[3, 1]);
    eps[0].state.in_flight.store(2, Ordering::Relaxed);
    eps[1].state.in_flight.store(1, Ordering::Relaxed);
    assert_eq!(pick(&b, &eps, None, &mut rng), 0, "3/3 beats 2/1");
}

#[test]
fn consistent_hash_is_sticky_and_falls_through() {
    let (b, eps, board) = setup(Policy::ConsistentHash, &[1, 1, 1, 1]);
    let mut rng = Rng::seeded(4);
    let owners: Vec<usize> = (0..1000u64)
        .map(|k| pick(&b, &eps, Some(hash::mix(k)), &mut rng))
        .collect();
    for (k, &o) in owners.iter().enumerate() {
        assert_eq!(pick(&b, &eps, Some(hash::mix(k as u64)), &mut rng), o);
    }
    // Endpoint 2 goes down: only its keys move, each to a stable next owner.
    eps[2].state.unhealthy.store(true, Ordering::Relaxed);
    board.bump();
    let moved: Vec<usize> = (0..1000u64)
        .map(|k| pick(&b, &eps, Some(hash::mix(k)), &mut rng))
        .collect();
    for k in 0..1000 {
        if owners[k] == 2 {
            assert_ne!(moved[k], 2);
            assert_eq!(
                pick(&b, &eps, Some(hash::mix(k as u64)), &mut rng),
                moved[k]
            );
        } else {
            assert_eq!(moved[k], owners[k]);
        }
    }
    // Back up: every key returns.
    eps[2].state.unhealthy.store(false, Ordering::Relaxed);
    board.bump();
    for (k, &o) in owners.iter().enumerate() {
        assert_eq!(pick(&b, &eps, Some(hash::mix(k as u64)), &mut rng), o);
    }
    // No key: round robin.
    let a = pick(&b, &eps, None, &mut rng);
    let c = pick(&b, &eps, None, &mut rng);
    assert_ne!(a, c);
}

#[test]
fn tried_endpoints_are_skipped_then_exhausted() {
    for policy in [
        Policy::RoundRobin,
        Policy::LeastRequest,
        Policy::Random,
        Policy::ConsistentHash,
    ] {
        let (b, eps, _) = setup(policy, &[1, 2, 1]);
        let mut rng = Rng::seeded(5);
        let mut tried = Tried::default();
        for _ in 0..3 {
            let p = b.pick(&eps, Some(42), &tried, &mut rng).unwrap();
            assert!(!tried.contains(p.index), "{policy:?}");
            tried.add(p.index);
        }
        assert_eq!(b.pick(&eps, Some(42), &tried, &mut rng), None, "{policy:?}");
    }
}

#[test]
fn unusable_endpoints_get_nothing_until_panic() {
    let (b, eps, board) = setup(Policy::RoundRobin, &[1, 1, 1, 1]);
    let mut rng = Rng::seeded(6);
    eps[1].state.unhealthy.store(true, Ordering::Relaxed);
    board.bump();
    assert!((0..100).all(|_| pick(&b, &eps, None, &mut rng) != 1));
    assert!(!b.in_panic());
    // Three of four down: 25% usable is under the 50% threshold, so all four take traffic.
    eps[0].state.unhealthy.store(true, Ordering::Relaxed);
    eps[2].state.unhealthy.store(true, Ordering::Relaxed);
    board.bump();
    let p = b.pick(&eps, None, &Tried::default(), &mut rng).unwrap();
    assert!(p.panic);
    let mut seen = [false; 4];
    for _ in 0..8 {
        seen[pick(&b, &eps, None, &mut rng)] = true;
    }
    assert_eq!(seen, [true; 4]);
}

#[test]
fn no_panic_mode_means_no_endpoint() {
    let board = Arc::new(Board::default());
    let eps = endpoints(&[1, 1], &board);
    let s = BalanceSettings {
        panic_threshold: 0,
        ..settings(Policy::RoundRobin)
    };
    let b = Balancer::new(s, board.clone(), &eps);
    for e in &eps {
        e.state.unhealthy.store(true, Ordering::Relaxed);
    }
    board.bump();
    assert_eq!(
        b.pick(&eps, None, &Tried::default(), &mut Rng::seeded(7)),
        None
    );
}

#[test]
fn slow_start_ramps_a_joining_endpoint() {
    let board = Arc::new(Board::default());
    let mut eps = endpoints(&[1, 1, 1, 1], &board);
    // Endpoint 3 joined just now, with a 100 s window: its factor is about 0.1.
    eps[3].state = Arc::new(EndpointState::new(
        board.clone(),
        EndpointMetrics::detached(),
        true,
    ));
    let s = BalanceSettings {
        slow_start: Duration::from_secs(100),
        ..settings(Policy::RoundRobin)
    };
    let b = Balancer::new(s, board.clone(), &eps);
    let mut rng = Rng::seeded(8);
    let mut counts = [0usize; 4];
    for _ in 0..10_000 {
        counts[pick(&b, &eps, None, &mut rng)] += 1;
    }
    // Full share would be 2,500; about 10% of the per-slot rate is expected.
    assert!(counts[3] < 500, "{counts:?}");
    assert!(counts[3] > 50, "it still gets some: {counts:?}");
}

#[test]
fn key_sources() {
    let mut headers = HeaderMap::new();
    headers.insert("x-user", "u1".parse().unwrap());
    headers.insert(COOKIE, "a=1; sid=abc; b=2".parse().unwrap());
    let claims: Map<String, Value> = serde_json::from_str(r#"{"sub": "u1"}"#).unwrap();
    let src = KeySource {
        headers: &headers,
        path: "/p",
        peer: "10.1.2.3".parse().unwrap(),
        trusted: &[],
        claims: Some(&claims),
    };
    let h = |k: HashKey| k.hash(&src);
    assert_eq!(
        h(HashKey::Header("x-user".parse().unwrap())),
        h(HashKey::Claim(ClaimPath::parse("sub").unwrap()))
    );
    assert_eq!(
        h(HashKey::Cookie("sid".into())),
        Some(hash::hash_bytes(0x6b65_7973, b"abc"))
    );
    assert_eq!(h(HashKey::Cookie("nope".into())), None);
    assert_eq!(h(HashKey::Header("x-none".parse().unwrap())), None);
    assert!(h(HashKey::Ip).is_some() && h(HashKey::Path).is_some());
    let no_claims = KeySource {
        claims: None,
        ..src
    };
    assert_eq!(
        HashKey::Claim(ClaimPath::parse("sub").unwrap()).hash(&no_claims),
        None
    );
}
