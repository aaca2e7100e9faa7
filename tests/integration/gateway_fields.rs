//! The fields the gateway sets on a proxied request (X-Forwarded-For/-Proto/-Host, X-Request-Id,
//! Host) reach every kind of upstream exactly once, with the gateway's values and none of a
//! client's spoofed copies: HTTP/1 (written beside the request's map, Host first), HTTP/2, a
//! route whose header edits touch them, a mirror's shadow, and a protocol upgrade. The
//! client's answer carries the gateway's request id once, whatever the upstream said.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use support::attack::Raw;
use support::traffic::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A client that lies about everything the gateway sets.
const SPOOFED: [(&str, &str); 5] = [
    ("x-forwarded-for", "6.6.6.6"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil.example"),
    ("forwarded", "for=6.6.6.6;proto=https"),
    ("x-request-id", "client-id-1"),
];

/// Sends `head` (request line and fields, without the blank line) with the spoofed fields
/// on `c`, and reads the answer.
async fn spoofing(c: &mut Raw, head: &str) -> support::attack::H1Response {
    let mut req = head.to_owned();
    for (k, v) in SPOOFED {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.send(req.as_bytes()).await;
    c.response(Duration::from_secs(5)).await.expect("an answer")
}

/// The one value the echo backend saw for `name` (fails on none or several).
fn once(j: &serde_json::Value, name: &str) -> String {
    let all = j["headers"][name]
        .as_array()
        .unwrap_or_else(|| panic!("no {name}: {j}"));
    assert_eq!(all.len(), 1, "{name} sent {} times: {j}", all.len());
    all[0].as_str().unwrap().to_owned()
}

/// The gateway's story of a spoofing client on plain HTTP from 127.0.0.1 (its valid
/// `x-request-id` is kept: ids pass through).
fn assert_gateway_story(j: &serde_json::Value, host: &str) {
    assert_eq!(once(j, "x-forwarded-for"), "127.0.0.1");
    assert_eq!(once(j, "x-forwarded-proto"), "http");
    assert_eq!(once(j, "x-forwarded-host"), host);
    assert_eq!(once(j, "x-request-id"), "client-id-1");
    assert!(j["headers"].get("forwarded").is_none(), "{j}");
}

/// A raw HTTP/1.1 upstream: hands back the head of each request it reads, answers 200.
async fn raw_upstream() -> (std::net::SocketAddr, tokio::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        let _ = tx.send(String::from_utf8_lossy(&head).into_owned()).await;
                        // An upstream that names its own request id: the client gets the
                        // gateway's, once.
                        let ok = b"HTTP/1.1 200 OK\r\nx-request-id: upstream-9\r\n\
                                   content-length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn http1_upstream_gets_host_first_and_each_field_once() {
    let (up, mut heads) = raw_upstream().await;
    let gw = TestGateway::start(
        &config()
            .no_access_log()
            .upstream("raw", &[up])
            .route("raw", "/raw", "raw")
            .build(),
    )
    .await;
    // Twice on one connection: the second request reuses both connections.
    let mut c = Raw::connect(gw.addr).await;
    for i in 0..2 {
        let head = format!("GET /raw/{i} HTTP/1.1\r\nhost: shop.example\r\naccept: */*\r\n");
        let r = spoofing(&mut c, &head).await;
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(r.head.matches("x-request-id").count(), 1, "{}", r.head);
        assert!(
            r.head.contains("x-request-id: client-id-1\r\n"),
            "{}",
            r.head
        );
        let head = tokio::time::timeout(Duration::from_secs(5), heads.recv())
            .await
            .unwrap()
            .unwrap()
            .to_ascii_lowercase();
        let lines: Vec<&str> = head.trim_end().split("\r\n").collect();
        assert_eq!(lines[0], format!("get /raw/{i} http/1.1"));
        assert_eq!(lines[1], format!("host: {up}"), "Host goes first: {head}");
        let count = |name: &str| {
            lines
                .iter()
                .filter(|l| l.starts_with(&format!("{name}:")))
                .count()
        };
        for name in [
            "host",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-request-id",
            "accept",
        ] {
            assert_eq!(count(name), 1, "{name} in {head}");
        }
        assert_eq!(count("forwarded"), 0, "{head}");
        assert!(lines.contains(&"x-forwarded-for: 127.0.0.1"), "{head}");
        assert!(lines.contains(&"x-forwarded-proto: http"), "{head}");
        assert!(lines.contains(&"x-forwarded-host: shop.example"), "{head}");
        assert!(lines.contains(&"x-request-id: client-id-1"), "{head}");
        assert!(
            !head.contains("6.6.6.6") && !head.contains("evil"),
            "{head}"
        );
    }
}

#[tokio::test]
async fn http2_upstream_gets_each_field_once() {
    let echo = Backend::echo("h2").await;
    let gw = TestGateway::start(
        &config()
            .no_access_log()
            .upstream_with("h2", &[echo.addr], "protocol = \"h2\"")
            .route("h2", "/h2", "h2")
            .build(),
    )
    .await;
    let mut headers = SPOOFED.to_vec();
    headers.push(("host", "shop.example"));
    let a = get_with(&gw.url("/h2/x"), &headers).await;
    assert_eq!(a.status, 200);
    let j = a.json();
    assert_eq!(j["backend"], "h2", "{j}");
    assert_gateway_story(&j, "shop.example");
}

#[tokio::test]
async fn route_header_edits_see_and_override_the_gateway_fields() {
    let echo = Backend::echo("app").await;
    let gw = TestGateway::start(
        &config()
            .no_access_log()
            .upstream("one", &[echo.addr])
            .route_with(
                "edit",
                "/edit",
                "one",
                r#"request_headers = { set = { "x-forwarded-proto" = "https" }, add = { "x-forwarded-for" = "10.9.9.9" }, remove = ["x-request-id"] }"#,
            )
            .route_with("kept", "/kept", "one", "preserve_host = true")
            .build(),
    )
    .await;
    let mut headers = SPOOFED.to_vec();
    headers.push(("host", "shop.example"));
    let j = get_with(&gw.url("/edit/x"), &headers).await.json();
    assert_eq!(once(&j, "x-forwarded-proto"), "https");
    assert_eq!(
        j["headers"]["x-forwarded-for"],
        serde_json::json!(["127.0.0.1", "10.9.9.9"]),
        "{j}"
    );
    assert_eq!(once(&j, "x-forwarded-host"), "shop.example");
    assert!(j["headers"].get("x-request-id").is_none(), "{j}");
    assert!(j["headers"].get("forwarded").is_none(), "{j}");
    assert_eq!(once(&j, "host"), echo.addr.to_string());
    // preserve_host: the client's Host, once, and the gateway's fields as ever.
    let j = get_with(&gw.url("/kept/x"), &headers).await.json();
    assert_eq!(once(&j, "host"), "shop.example");
    assert_gateway_story(&j, "shop.example");
}

#[tokio::test]
async fn a_mirrors_shadow_gets_each_field_once() {
    let primary = Backend::echo("primary").await;
    let shadow = Recorder::start("shadow", Duration::ZERO).await;
    let gw = TestGateway::start(&traffic_config(
        &[("primary", primary.addr), ("shadow", shadow.backend.addr)],
        r#"
[[routes]]
id = "on"
match = { path_prefix = "/on" }
upstream = "primary"
mirror = { upstream = "shadow", percent = 100 }
"#,
    ))
    .await;
    let mut headers = SPOOFED.to_vec();
    headers.push(("host", "shop.example"));
    let j = get_with(&gw.url("/on/x"), &headers).await.json();
    assert_gateway_story(&j, "shop.example");
    assert_eq!(once(&j, "host"), primary.addr.to_string());
    assert!(shadow.wait_for(1, Duration::from_secs(5)).await);
    let seen = &shadow.seen()[0];
    let values = |name: &str| -> Vec<&str> {
        seen.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values("x-forwarded-proto"), ["http"]);
    assert_eq!(values("x-forwarded-host"), ["shop.example"]);
    assert_eq!(values("x-request-id"), ["client-id-1"]);
    assert!(values("forwarded").is_empty());
    assert_eq!(
        seen.host,
        format!("127.0.0.1-shadow:{}", shadow.backend.addr.port())
    );
}

#[tokio::test]
async fn an_upgrade_gets_each_field_once() {
    let seen = Arc::new(Mutex::new(None::<http::HeaderMap>));
    let keep = seen.clone();
    let backend = Backend::start(move |mut req: Request<Incoming>| {
        let keep = keep.clone();
        async move {
            *keep.lock().unwrap() = Some(req.headers().clone());
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let _ = on.await;
            });
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("upgrade", "websocket".parse().unwrap());
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            r
        }
    })
    .await;
    let gw = TestGateway::start(
        &config()
            .no_access_log()
            .upstream("ws", &[backend.addr])
            .route("ws", "/ws", "ws")
            .build(),
    )
    .await;
    let mut c = Raw::connect(gw.addr).await;
    let head = "GET /ws HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    let r = spoofing(&mut c, head).await;
    assert_eq!(r.status, 101, "{}", r.head);
    let headers = seen.lock().unwrap().clone().expect("the upgrade arrived");
    let values = |name: &str| -> Vec<&str> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(values("host"), [backend.addr.to_string().as_str()]);
    assert_eq!(values("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values("x-forwarded-proto"), ["http"]);
    assert_eq!(values("x-forwarded-host"), ["shop.example"]);
    assert_eq!(values("x-request-id"), ["client-id-1"]);
    assert!(values("forwarded").is_empty());
}
