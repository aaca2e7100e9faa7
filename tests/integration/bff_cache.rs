//! Per-part answer cache: fresh hits skip the backend, keys never mix callers, and the last
//! good answer is served when the backend fails (stale-if-error). The TTL logic itself is
//! unit-tested with a fake clock in `bff::cache`.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use support::*;

/// A backend that answers `{"n": N, "path": ...}` for the first `good` requests, then 503.
async fn flaky(good: usize) -> Backend {
    let served = Arc::new(AtomicUsize::new(0));
    Backend::start(move |req: http::Request<hyper::body::Incoming>| {
        let n = served.fetch_add(1, Ordering::SeqCst) + 1;
        let path = req.uri().to_string();
        async move {
            if n <= good {
                json_response(200, json!({"n": n, "path": path}))
            } else {
                json_response(503, json!({"error": "down"}))
            }
        }
    })
    .await
}

fn config(addr: std::net::SocketAddr, cache: &str) -> (String, String) {
    let gateway = support::config().upstream("b", &[addr]).build();
    let bff = profile("/c")
        .endpoint("/me")
        .part(
            "p",
            "b",
            "/users/{query.user}",
            &format!("required = true\ncache = {cache}"),
        )
        .build();
    (gateway, bff)
}

#[tokio::test]
async fn fresh_answers_come_from_the_cache_per_caller() {
    let backend = flaky(100).await;
    let (g, p) = config(backend.addr, r#"{ ttl = "60s" }"#);
    let gw = TestGateway::start_with_files(&g, &[("bff/c.toml", &p)]).await;
    let first = get(&gw.url("/c/me?user=1")).await;
    assert_eq!(first.json()["p"]["n"], 1);
    let again = get(&gw.url("/c/me?user=1")).await;
    assert_eq!(again.json()["p"]["n"], 1, "served from the cache");
    assert!(again.header("server-timing").unwrap().contains("p;dur="));
    assert!(
        again
            .header("server-timing")
            .unwrap()
            .contains("desc=\"cache\"")
    );
    assert_eq!(backend.hits(), 1);
    let other = get(&gw.url("/c/me?user=2")).await;
    assert_eq!(
        other.json()["p"],
        json!({"n": 2, "path": "/users/2"}),
        "another caller, another key"
    );
    assert_eq!(backend.hits(), 2);
}

#[tokio::test]
async fn the_last_good_answer_is_served_when_the_backend_fails() {
    let backend = flaky(1).await;
    let (g, p) = config(backend.addr, r#"{ ttl = "1ms", stale_if_error = "1h" }"#);
    let gw = TestGateway::start_with_files(&g, &[("bff/c.toml", &p)]).await;
    assert_eq!(get(&gw.url("/c/me?user=1")).await.json()["p"]["n"], 1);
    // Let the 1 ms TTL run out (this awaits the clock the TTL is measured on).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let stale = get(&gw.url("/c/me?user=1")).await;
    assert_eq!(stale.status, 200, "{:?}", stale.body);
    assert_eq!(stale.json()["p"]["n"], 1);
    assert!(
        stale
            .header("server-timing")
            .unwrap()
            .contains("desc=\"stale\"")
    );
    assert_eq!(backend.hits(), 2, "the backend was asked first");
    // Nothing cached for this caller: the required part fails.
    let none = get(&gw.url("/c/me?user=2")).await;
    assert_eq!(none.status, 502);
}

#[test]
fn cache_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (g, p) = config(
        "127.0.0.1:1".parse().unwrap(),
        r#"{ ttl = "0", stale_if_error = "later" }"#,
    );
    write(dir.path(), "gateway.toml", &g);
    write(dir.path(), "bff/c.toml", &p);
    let err = load_errors_in(dir.path());
    assert!(
        err.contains("endpoints[0].parts[0].cache.ttl: must be more than 0"),
        "{err}"
    );
    assert!(
        err.contains("endpoints[0].parts[0].cache.stale_if_error: bad duration"),
        "{err}"
    );
}
