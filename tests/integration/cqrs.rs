//! CQRS routing (issue 22): `write_upstream` splits reads from writes; `read_your_writes`
//! keeps a recent writer's reads on the write side for a window, or until the read side
//! reports the written version (`consistency_header`); bad keys are `portico check` errors.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::traffic::*;
use support::*;

/// A backend that answers `{"side": NAME}` with `x-version: VERSION` (the atomic's value).
async fn side(name: &'static str, version: Arc<AtomicU64>) -> Backend {
    Backend::start(move |_req| {
        let v = version.load(Ordering::SeqCst);
        async move {
            let mut resp = json_response(200, serde_json::json!({ "side": name }));
            resp.headers_mut()
                .insert("x-version", v.to_string().parse().unwrap());
            resp
        }
    })
    .await
}

async fn call(gw: &TestGateway, method: &str, user: &str) -> String {
    let req = Request::builder()
        .method(method)
        .uri(gw.url("/orders/1"))
        .header("x-user", user)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let a = send(req).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    a.json()["side"].as_str().unwrap().to_string()
}

fn config(read: &Backend, write: &Backend, ryw: &str) -> String {
    let route = format!(
        r#"
[[routes]]
id = "orders"
match = {{ path_prefix = "/orders" }}
upstream = "orders-read"
write_upstream = "orders-write"
{ryw}
"#
    );
    traffic_config(
        &[("orders-read", read.addr), ("orders-write", write.addr)],
        &route,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_methods_read_and_others_write() {
    let v = Arc::new(AtomicU64::new(0));
    let (read, write) = (side("read", v.clone()).await, side("write", v).await);
    let gw = TestGateway::start(&config(&read, &write, "")).await;
    for m in ["GET", "HEAD", "OPTIONS"] {
        if m == "HEAD" {
            let req = Request::head(gw.url("/orders/1"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            assert_eq!(send(req).await.status, 200);
            continue;
        }
        assert_eq!(call(&gw, m, "u1").await, "read", "{m}");
    }
    for m in ["POST", "PUT", "PATCH", "DELETE"] {
        assert_eq!(call(&gw, m, "u1").await, "write", "{m}");
    }
    // No read_your_writes: a writer's next read still goes to the read side.
    assert_eq!(call(&gw, "GET", "u1").await, "read");
    assert_eq!(read.hits(), 4);
    assert_eq!(write.hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_reads_its_writes_for_the_window_and_others_do_not() {
    let v = Arc::new(AtomicU64::new(0));
    let (read, write) = (side("read", v.clone()).await, side("write", v).await);
    let ryw = r#"read_your_writes = { key = "header:x-user", window = "1m" }"#;
    let gw = TestGateway::start(&config(&read, &write, ryw)).await;
    assert_eq!(call(&gw, "GET", "alice").await, "read");
    assert_eq!(call(&gw, "POST", "alice").await, "write");
    for _ in 0..3 {
        assert_eq!(call(&gw, "GET", "alice").await, "write");
        assert_eq!(call(&gw, "GET", "bob").await, "read");
    }
    // A request without the key has no window.
    let req = Request::get(gw.url("/orders/1"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(req).await.json()["side"], "read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_starts_no_window() {
    let v = Arc::new(AtomicU64::new(0));
    let read = side("read", v).await;
    let write = Backend::start(|_req| async { json_response(500, serde_json::json!({})) }).await;
    let ryw = r#"read_your_writes = { key = "header:x-user", window = "1m" }"#;
    let gw = TestGateway::start(&config(&read, &write, ryw)).await;
    let req = Request::post(gw.url("/orders/1"))
        .header("x-user", "alice")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(req).await.status, 500);
    assert_eq!(call(&gw, "GET", "alice").await, "read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_mode_reads_from_the_read_side_once_it_has_the_version() {
    let read_version = Arc::new(AtomicU64::new(40));
    let write_version = Arc::new(AtomicU64::new(42));
    let read = side("read", read_version.clone()).await;
    let write = side("write", write_version).await;
    let ryw = r#"read_your_writes = { key = "header:x-user", window = "1m", consistency_header = "x-version" }"#;
    let gw = TestGateway::start(&config(&read, &write, ryw)).await;
    assert_eq!(call(&gw, "POST", "alice").await, "write");
    // The read side has reported nothing at or past 42 yet.
    assert_eq!(call(&gw, "GET", "alice").await, "write");
    assert_eq!(call(&gw, "GET", "bob").await, "read"); // reports 40
    assert_eq!(call(&gw, "GET", "alice").await, "write");
    read_version.store(41, Ordering::SeqCst);
    assert_eq!(call(&gw, "GET", "bob").await, "read"); // reports 41
    assert_eq!(call(&gw, "GET", "alice").await, "write");
    read_version.store(42, Ordering::SeqCst);
    assert_eq!(call(&gw, "GET", "bob").await, "read"); // reports 42: caught up
    assert_eq!(call(&gw, "GET", "alice").await, "read");
}

#[test]
fn bad_cqrs_keys_are_reported_with_their_place() {
    let upstreams = [
        ("a", "127.0.0.1:7001".parse().unwrap()),
        ("b", "127.0.0.1:7002".parse().unwrap()),
    ];
    let routes = r#"
[[routes]]
id = "claim-without-auth"
match = { path_prefix = "/x" }
upstream = "a"
write_upstream = "b"
read_your_writes = { key = "claim:sub" }

[[routes]]
id = "no-write-side"
match = { path_prefix = "/y" }
upstream = "a"
read_your_writes = { key = "header:x-user" }

[[routes]]
id = "unknown"
match = { path_prefix = "/z" }
upstream = "a"
write_upstream = "nope"
read_your_writes = { key = "ip", window = "0s" }
"#;
    let text = traffic_config(&upstreams, routes);
    let (code, _, err) = check_config(&text, &[]);
    assert_eq!(code, 1, "{err}");
    for want in [
        "routes[0].read_your_writes.key: a `claim:` key needs `auth` on the route",
        "routes[1].read_your_writes: `read_your_writes` needs `write_upstream` on the route",
        "routes[2].write_upstream: unknown upstream `nope` in route `unknown`",
        "routes[2].read_your_writes.key: bad read_your_writes key \"ip\"",
        "routes[2].read_your_writes.window: must be more than 0",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    assert!(
        err.contains("gateway.toml:21:28: routes[0].read_your_writes.key"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_read_your_writes_crosses_instances_through_redis_and_falls_back_when_it_dies() {
    let mut redis = support::redis::RedisServer::start();
    let v = Arc::new(AtomicU64::new(0));
    let (read, write) = (side("read", v.clone()).await, side("write", v).await);
    let ryw = format!(
        "read_your_writes = {{ key = \"header:x-user\", window = \"1m\", shared = true }}\n\n[cluster]\nredis = \"{}\"\ntimeout = \"500ms\"\n",
        redis.url()
    );
    let a = TestGateway::start(&config(&read, &write, &ryw)).await;
    let b = TestGateway::start(&config(&read, &write, &ryw)).await;
    assert_eq!(call(&b, "GET", "alice").await, "read");
    // Alice writes through A; her next read lands on B, which learnt it from Redis.
    assert_eq!(call(&a, "POST", "alice").await, "write");
    assert_eq!(call(&b, "GET", "alice").await, "write");
    assert_eq!(call(&b, "GET", "bob").await, "read");
    let keys = redis.command(&["KEYS", "portico:ryw:orders:*"]).await;
    assert!(keys.contains("portico:ryw:orders:alice"), "{keys}");

    // Redis dies: each instance decides from its own map (A still knows alice; B does not).
    redis.kill();
    assert_eq!(call(&a, "POST", "carol").await, "write");
    assert_eq!(call(&a, "GET", "carol").await, "write");
    assert_eq!(call(&b, "GET", "carol").await, "read");
}

#[test]
fn shared_read_your_writes_needs_a_cluster() {
    let config = traffic_config(
        &[
            ("orders-read", "127.0.0.1:7001".parse().unwrap()),
            ("orders-write", "127.0.0.1:7002".parse().unwrap()),
        ],
        r#"
[[routes]]
id = "orders"
match = { path_prefix = "/orders" }
upstream = "orders-read"
write_upstream = "orders-write"
read_your_writes = { key = "header:x-user", shared = true }
"#,
    );
    let (code, _, err) = check_config(&config, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("routes[0].read_your_writes.shared: `shared = true` needs `[cluster]`"),
        "{err}"
    );
}
