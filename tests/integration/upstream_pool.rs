//! The upstream connection pool: sequential requests share one connection, an idle connection
//! closes after `pool_idle_timeout`, a connection the upstream closed is not used for a
//! streamed body, a refused connection fails over with the body, HTTPS connections are reused,
//! and `[circuit] max_connections` / `max_pending` answer 503 at once.

use crate::support;

use std::time::{Duration, Instant};

use http::StatusCode;
use support::tls::{Pki, server_config};
use support::*;

fn gateway_toml(endpoints: &[String], extra: &str) -> String {
    support::config()
        .no_access_log()
        .upstream_with("app", endpoints, &format!("timeout = \"5s\"\n{extra}"))
        .route("app", "/", "app")
        .build()
}

fn body_of(text: &str) -> serde_json::Value {
    let (_, body) = text.split_once("\r\n\r\n").expect("a response head");
    // The gateway may answer chunked; the JSON is the longest line.
    let json = body
        .lines()
        .max_by_key(|l| l.len())
        .expect("a response body");
    serde_json::from_str(json).unwrap_or_else(|_| panic!("{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_share_one_upstream_connection() {
    let backend = ConnBackend::start(ConnOpts::default()).await;
    let gw = TestGateway::start(&gateway_toml(&[backend.addr.to_string()], "")).await;
    for i in 0..20 {
        let r = get(&gw.url(&format!("/n/{i}"))).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.json()["conn"], 1, "request {i}");
    }
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_closes_after_the_idle_timeout() {
    let backend = ConnBackend::start(ConnOpts::default()).await;
    let extra = "pool_idle_timeout = \"300ms\"";
    let gw = TestGateway::start(&gateway_toml(&[backend.addr.to_string()], extra)).await;
    assert_eq!(get(&gw.url("/a")).await.status, StatusCode::OK);
    assert_eq!(backend.open.get(), 1, "kept open after the answer");
    let started = Instant::now();
    assert!(
        backend
            .open
            .wait_for(Duration::from_secs(5), |n| n == 0)
            .await,
        "the idle connection was not closed"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    let r = get(&gw.url("/b")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["conn"],
        2,
        "a new connection after the idle one closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_closed_by_the_upstream_is_not_used_for_a_streamed_body() {
    let backend = ConnBackend::start(ConnOpts {
        close_after: Some(Duration::from_millis(20)),
        ..ConnOpts::default()
    })
    .await;
    // One endpoint only: no failover could hide a lost body.
    let gw = TestGateway::start(&gateway_toml(&[backend.addr.to_string()], "")).await;
    for round in 0..3 {
        assert_eq!(get(&gw.url("/warm")).await.status, StatusCode::OK);
        assert!(
            backend
                .open
                .wait_for(Duration::from_secs(5), |n| n == 0)
                .await,
            "the backend did not close its connection"
        );
        let before = backend.accepted();
        let chunk = [b'q'; 3000];
        let text = raw(gw.addr, &chunked_post("/upload", [&chunk[..]; 3])).await;
        assert!(text.starts_with("HTTP/1.1 200"), "round {round}: {text}");
        let body = body_of(&text);
        assert_eq!(body["body_len"], 9000, "round {round}: {text}");
        assert_eq!(body["body_sum"], checksum(&[b'q'; 9000]));
        assert_eq!(body["conn"], before + 1, "sent on a new connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_fails_over_with_the_streamed_body() {
    let backend = ConnBackend::start(ConnOpts::default()).await;
    let dead = dead_addr().await;
    let endpoints = [dead.to_string(), backend.addr.to_string()];
    // Round robin: half the requests try the refusing endpoint first.
    let gw = TestGateway::start(&gateway_toml(&endpoints, "")).await;
    for i in 0..4 {
        let chunk = [b'f'; 2048];
        let text = raw(gw.addr, &chunked_post("/upload", [&chunk[..]; 2])).await;
        assert!(text.starts_with("HTTP/1.1 200"), "request {i}: {text}");
        assert_eq!(body_of(&text)["body_len"], 4096);
    }
    assert_eq!(backend.accepted(), 1, "one pooled connection for all four");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_connection_is_reused() {
    let pki = Pki::new("Pool CA");
    let backend = ConnBackend::start(ConnOpts {
        tls: Some(server_config(&pki.server(&["localhost"]), None)),
        ..ConnOpts::default()
    })
    .await;
    let endpoint = format!("https://localhost:{}", backend.addr.port());
    let toml = gateway_toml(&[endpoint], "ca_file = \"ca.pem\"");
    let gw = TestGateway::start_with_files(&toml, &[("ca.pem", &pki.ca_pem)]).await;
    for i in 0..10 {
        let r = get(&gw.url(&format!("/s/{i}"))).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_past_the_limit_at_once() {
    let held = HeldBackend::start().await;
    let extra = "[upstreams.app.circuit]\nmax_connections = 2";
    let toml = gateway_toml(&[held.backend.addr.to_string()], extra);
    let gw = TestGateway::start(&toml).await;
    let slow: Vec<_> = (0..2)
        .map(|i| {
            let url = gw.url(&format!("/slow/{i}"));
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    held.wait_arrival().await;
    held.wait_arrival().await;
    let started = Instant::now();
    let r = get(&gw.url("/slow/third")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.header("portico-overloaded"), Some("upstream"));
    assert!(r.json()["type"].as_str().unwrap().ends_with("/overloaded"));
    assert!(started.elapsed() < Duration::from_secs(1));
    held.release(2);
    for s in slow {
        assert_eq!(s.await.unwrap().status, StatusCode::OK);
    }
    // The two connections are pooled: the next requests need no third.
    assert_eq!(get(&gw.url("/fast")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pending_refuses_requests_waiting_for_a_connection() {
    // Accepts TCP but never finishes a TLS handshake: a request waits for its connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            kept.push(s);
        }
    });
    let extra = "[upstreams.app.circuit]\nmax_pending = 1";
    let toml = gateway_toml(&[format!("https://127.0.0.1:{}", addr.port())], extra)
        .replace("timeout = \"5s\"", "timeout = \"1s\"");
    let gw = TestGateway::start(&toml).await;
    let url = gw.url("/first");
    let first = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let r = get(&gw.url("/second")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.header("portico-overloaded"), Some("upstream"));
    assert!(started.elapsed() < Duration::from_millis(500));
    // The waiting one runs into its timeout.
    assert_eq!(first.await.unwrap().status, StatusCode::GATEWAY_TIMEOUT);
}
