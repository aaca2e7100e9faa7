//! Hardening against slow clients (issue 19): `header_read_timeout` runs from connection open,
//! before protocol detection, so a silent connection or one dribbling the HTTP/2 preface (or
//! sending a preface and SETTINGS but no request) is closed when it expires, and silent
//! connections that fill `max_connections` cannot keep the gateway from serving.

use crate::support;

use std::time::{Duration, Instant};

use support::attack::*;
use support::*;

/// How many silent connections the flood test opens (= the test's `max_connections`).
const SILENT: usize = 300;

fn limits(max_connections: usize) -> String {
    format!(
        "[limits]\nheader_read_timeout = \"400ms\"\nidle_timeout = \"30s\"\nmax_connections = {max_connections}\n"
    )
}

#[tokio::test]
async fn silent_connections_are_closed_by_the_header_timer_and_do_not_block_serving() {
    let backend = Backend::echo("echo").await;
    let gw = target_gateway(&backend, "", &limits(SILENT)).await;
    let started = Instant::now();
    let mut silent = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        silent.push(Raw::connect(gw.addr).await);
    }
    // Every slot is taken by a connection that never sends a byte; each must be closed by the
    // gateway well before idle_timeout (30 s).
    for (i, c) in silent.iter_mut().enumerate() {
        assert!(
            c.closed_within(Duration::from_secs(5)).await,
            "silent connection {i} still open after {:?}",
            started.elapsed()
        );
    }
    let closed_after = started.elapsed();
    assert!(closed_after < Duration::from_secs(5), "{closed_after:?}");
    // The slots are free again: a real client is served.
    let a = get(&gw.url("/echo/after")).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn dribbled_h2_preface_is_cut_at_the_header_timeout() {
    let backend = Backend::echo("echo").await;
    let gw = target_gateway(&backend, "", &limits(100)).await;
    let mut c = Raw::connect(gw.addr).await;
    let started = Instant::now();
    let mut cut = false;
    // One byte every 100 ms: the 24-byte preface would take 2.4 s.
    for b in PREFACE.iter() {
        if !c.send(&[*b]).await {
            cut = true;
            break;
        }
        if c.closed_within(Duration::from_millis(100)).await {
            cut = true;
            break;
        }
    }
    assert!(cut || c.closed_within(Duration::from_secs(2)).await);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(1500),
        "closed after {elapsed:?}"
    );
    assert_eq!(backend.hits(), 0);
}

#[tokio::test]
async fn h2_preface_and_settings_without_a_request_are_cut() {
    let backend = Backend::echo("echo").await;
    let gw = target_gateway(&backend, "", &limits(100)).await;
    let mut c = Raw::connect(gw.addr).await;
    let started = Instant::now();
    c.send(&h2_start()).await;
    // The server's SETTINGS arrive; we ack them and then say nothing more.
    let f = c
        .frame(Duration::from_secs(2))
        .await
        .expect("server SETTINGS");
    assert_eq!(f.kind, SETTINGS);
    c.send(&frame(SETTINGS, ACK, 0, &[])).await;
    assert!(c.closed_within(Duration::from_secs(3)).await);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn slow_h1_request_line_is_cut() {
    let backend = Backend::echo("echo").await;
    let gw = target_gateway(&backend, "", &limits(100)).await;
    let mut c = Raw::connect(gw.addr).await;
    let started = Instant::now();
    let mut cut = false;
    for b in b"GET /echo/slow HTTP/1.1\r\nHost: gw.test\r\n\r\n" {
        if !c.send(&[*b]).await || c.closed_within(Duration::from_millis(100)).await {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "a 4 s request head got through a 400 ms header timeout"
    );
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(backend.hits(), 0);
}

#[tokio::test]
async fn the_timer_spares_a_slow_first_request() {
    let slow = RawBackend::start("slow", Fault::Delay(Duration::from_millis(900))).await;
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = ""
[log]
access_log = false
{}
[upstreams.slow]
endpoints = ["{}"]
[[routes]]
id = "slow"
match = {{ path_prefix = "/" }}
upstream = "slow"
"#,
        limits(100),
        slow.addr
    );
    let gw = TestGateway::start(&cfg).await;
    let mut c = Raw::connect(gw.addr).await;
    // The first request's head arrives at once; its answer takes longer than the header timer.
    c.send(b"GET /a HTTP/1.1\r\nHost: gw.test\r\n\r\n").await;
    let r = c.response(Duration::from_secs(5)).await.expect("answer");
    assert_eq!(r.status, 200, "{}", r.head);
}
