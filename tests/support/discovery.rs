//! Shared steps of the discovery tests: wait until traffic reaches a backend, and check that
//! a request in flight to an endpoint a source removes still completes.

use std::future::Future;
use std::time::{Duration, Instant};

use super::backend::{Backend, HeldBackend};
use super::client::get;
use super::gateway::TestGateway;

/// Sends GET `path` until `to` serves one (bounded by `within`); the time it took.
pub async fn wait_routed(gw: &TestGateway, path: &str, to: &Backend, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let before = to.hits();
        let r = get(&gw.url(path)).await;
        if r.status == 200 && to.hits() > before {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "no request reached {} within {within:?} (last answer {})",
            to.addr,
            r.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends GET /orders/x until a window of `n` goes to `only` alone (bounded: 10 s).
pub async fn wait_only(gw: &TestGateway, only: &Backend, n: usize) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let before = only.hits();
        for _ in 0..n {
            assert_eq!(get(&gw.url("/orders/x")).await.status, 200);
        }
        if only.hits() - before == n {
            return;
        }
        assert!(
            Instant::now() < until,
            "traffic never went to {} alone",
            only.addr
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With `held` in the upstream of `/orders` and `/slow` and `other` beside or after it: a request held
/// at `held` stays in flight while `remove` takes `held` out of the set; once traffic goes to
/// `other` only, the held request is released and must complete with 200.
pub async fn assert_in_flight_completes<F: Future<Output = ()>>(
    gw: &TestGateway,
    held: &HeldBackend,
    other: &Backend,
    remove: F,
) {
    let url = gw.url("/slow/x");
    let inflight = tokio::spawn(async move { get(&url).await });
    held.wait_arrival().await;
    remove.await;
    // The set changed: requests go to `other` only.
    wait_only(gw, other, 5).await;
    held.release(1);
    let r = tokio::time::timeout(Duration::from_secs(10), inflight)
        .await
        .expect("the in-flight request did not complete")
        .unwrap();
    assert_eq!(r.status, 200, "the in-flight request failed: {:?}", r.body);
}
