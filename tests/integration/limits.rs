//! Connection limits: slow headers, idle keep-alive, connection cap.

use crate::support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn gateway(limits: &str) -> (Backend, TestGateway) {
    let backend = Backend::echo("app").await;
    let cfg = config()
        .toml(&format!("[limits]\n{limits}"))
        .upstream("app", &[backend.addr])
        .route("all", "/", "app")
        .build();
    (backend, TestGateway::start(&cfg).await)
}

/// A connection that sent one GET and got its 200, kept open.
async fn answered_keep_alive(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    s
}

#[tokio::test]
async fn slow_request_head_is_cut_off() {
    let (backend, gw) = gateway("header_read_timeout = \"300ms\"").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap(); // never finishes the head
    let (_, took) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    assert_eq!(backend.hits(), 0);
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let (_backend, gw) =
        gateway("keepalive_timeout = \"300ms\"\nheader_read_timeout = \"10s\"").await;
    let mut s = answered_keep_alive(gw.addr).await;
    // Now idle: the gateway closes the connection after about keepalive_timeout.
    let (_, took) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed() {
    let (_backend, gw) = gateway("max_connections = 2").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let s = answered_keep_alive(gw.addr).await;
        held.push(s);
    }
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    let _ = third.write_all(b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let (got, _) = read_until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(
        got.is_empty(),
        "third connection was served: {}",
        String::from_utf8_lossy(&got)
    );
    drop(held);
    // Capacity comes back once the held connections close.
    let mut ok = false;
    for _ in 0..50 {
        let a = raw(
            gw.addr,
            b"GET /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        if a.starts_with("HTTP/1.1 200") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "capacity did not come back");
}

/// IoT and mobile clients keep one connection between sparse requests: an idle keep-alive
/// connection outlives header_read_timeout (it lasts keepalive_timeout), while a request head
/// that starts and stalls is still cut header_read_timeout after its first byte.
#[tokio::test]
async fn idle_keep_alive_outlives_header_read_timeout_but_a_stalled_head_is_cut() {
    let (backend, gw) = gateway("header_read_timeout = \"1s\"\nkeepalive_timeout = \"30s\"").await;
    let mut s = answered_keep_alive(gw.addr).await;
    // Idle three times header_read_timeout: still usable.
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.write_all(b"GET /again HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answer on the idle keep-alive connection")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(backend.hits(), 2);
    // Idle again, then half a request head: cut about 1 s after its first byte.
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.write_all(b"GET /stalled HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let (_, took) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2500),
        "a stalled head was closed after {took:?}"
    );
    assert_eq!(backend.hits(), 2);
}
