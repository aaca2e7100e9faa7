//! Hardening of protocol upgrades (issue 19): only allow-listed upgrades are tunnelled
//! (WebSocket by default, per-route `upgrades = [...]`), an `h2c` upgrade never is (RFC 9113
//! §3.1), an upstream 101 nobody asked for is refused, and a tunnel opens only after the
//! route's guards passed.

use crate::support;

use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::attack::*;
use support::*;

const T: Duration = Duration::from_secs(5);

/// A backend that switches to whatever protocol the request's `Upgrade` names (then echoes
/// five bytes upper-cased), and answers other requests with a JSON echo.
async fn upgrading_backend(always_switch: bool) -> Backend {
    Backend::start(move |mut req: Request<Incoming>| async move {
        let asked = req
            .headers()
            .get("upgrade")
            .map(|v| v.to_str().unwrap().to_string());
        let Some(proto) = asked.or(always_switch.then(|| "h2c".to_string())) else {
            let headers: serde_json::Map<_, _> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").into()))
                .collect();
            return json_response(
                200,
                serde_json::json!({"path": req.uri().path(), "headers": headers}),
            );
        };
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = hyper_util::rt::TokioIo::new(up);
                let mut buf = [0u8; 5];
                if io.read_exact(&mut buf).await.is_ok() {
                    let _ = io.write_all(&buf.to_ascii_uppercase()).await;
                }
            }
        });
        let mut r = Response::new(full(""));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", proto.parse().unwrap());
        r.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        r
    })
    .await
}

const ROUTES: &str = r#"
[[routes]]
id = "custom"
match = { path_prefix = "/custom" }
upstream = "echo"
upgrades = ["websocket", "echo"]

[[routes]]
id = "none"
match = { path_prefix = "/none" }
upstream = "echo"
upgrades = []
"#;

fn upgrade_request(path: &str, proto: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: {proto}\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Tunnel check: five bytes out, the same upper-cased back.
async fn tunnels(c: &mut Raw) -> bool {
    c.send(b"hello").await;
    c.take(5, T).await.as_deref() == Some(b"HELLO")
}

#[tokio::test]
async fn h2c_upgrade_is_never_tunnelled_and_later_bytes_are_routed() {
    let backend = upgrading_backend(false).await;
    let gw = target_gateway(&backend, "", ROUTES).await;
    let mut c = Raw::connect(gw.addr).await;
    c.send(upgrade_request("/echo/x", "h2c", "").as_bytes())
        .await;
    let r = c.response(T).await.expect("an answer");
    assert_eq!(r.status, 200, "h2c must not be switched to: {}", r.head);
    let j = r.json();
    assert!(j["headers"].get("upgrade").is_none(), "{j}");
    assert!(j["headers"].get("http2-settings").is_none(), "{j}");
    // The connection is still HTTP/1.1 through the gateway: the next request is routed and
    // the JWT route checks it.
    c.send(b"GET /secure/admin HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await;
    let r = c.response(T).await.expect("second answer");
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(backend.hits(), 1);

    // Even a route that lists h2c cannot: the config refuses it (see the check test), and a
    // protocol not on the route's list goes as a plain request.
    let mut c = Raw::connect(gw.addr).await;
    c.send(upgrade_request("/echo/x", "foo/1", "").as_bytes())
        .await;
    let r = c.response(T).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.head);
    let mut c = Raw::connect(gw.addr).await;
    c.send(upgrade_request("/none/x", "websocket", "").as_bytes())
        .await;
    let r = c.response(T).await.unwrap();
    assert_eq!(r.status, 200, "upgrades = [] allows none: {}", r.head);
}

#[tokio::test]
async fn websocket_and_listed_upgrades_are_tunnelled() {
    let backend = upgrading_backend(false).await;
    let gw = target_gateway(&backend, "", ROUTES).await;
    for (path, proto) in [
        ("/echo/ws", "websocket"),
        ("/custom/ws", "WebSocket"),
        ("/custom/x", "echo"),
    ] {
        let mut c = Raw::connect(gw.addr).await;
        c.send(upgrade_request(path, proto, "").as_bytes()).await;
        let r = c.response(T).await.unwrap();
        assert_eq!(r.status, 101, "{path} {proto}: {}", r.head);
        assert!(tunnels(&mut c).await, "{path} {proto}");
    }
    // "echo" is not on /echo's default list.
    let mut c = Raw::connect(gw.addr).await;
    c.send(upgrade_request("/echo/x", "echo", "").as_bytes())
        .await;
    assert_eq!(c.response(T).await.unwrap().status, 200);
}

#[tokio::test]
async fn upgrade_needs_the_routes_guards_first() {
    let backend = upgrading_backend(false).await;
    let gw = target_gateway(&backend, "", ROUTES).await;
    let mut c = Raw::connect(gw.addr).await;
    c.send(upgrade_request("/secure/ws", "websocket", "").as_bytes())
        .await;
    let r = c.response(T).await.unwrap();
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(backend.hits(), 0);
    let tok = token("u1");
    let mut c = Raw::connect(gw.addr).await;
    c.send(
        upgrade_request(
            "/secure/ws",
            "websocket",
            &format!("Authorization: Bearer {tok}\r\n"),
        )
        .as_bytes(),
    )
    .await;
    let r = c.response(T).await.unwrap();
    assert_eq!(r.status, 101, "{}", r.head);
    assert!(tunnels(&mut c).await);
}

#[tokio::test]
async fn unrequested_or_other_protocol_switch_from_upstream_is_refused() {
    let backend = upgrading_backend(true).await;
    let gw = target_gateway(&backend, "", ROUTES).await;
    // The client's h2c offer is stripped; the upstream switches anyway: 502, no tunnel.
    let mut c = Raw::connect(gw.addr).await;
    c.send(upgrade_request("/echo/x", "h2c", "").as_bytes())
        .await;
    let r = c.response(T).await.unwrap();
    assert_eq!(r.status, 502, "{}", r.head);
    // A plain request answered with 101: 502 too.
    let mut c = Raw::connect(gw.addr).await;
    c.send(b"GET /echo/x HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await;
    let r = c.response(T).await.unwrap();
    assert_eq!(r.status, 502, "{}", r.head);
}

#[test]
fn h2c_in_a_routes_upgrades_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        r#"[upstreams.app]
endpoints = ["127.0.0.1:9"]

[[routes]]
id = "r"
match = { path_prefix = "/" }
upstream = "app"
upgrades = ["websocket", "h2c", "bad token"]
"#,
    )
    .unwrap();
    let (code, out, err) = portico_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("gateway.toml:8:26: routes[0].upgrades[1]"),
        "{all}"
    );
    assert!(all.contains("h2c"), "{all}");
    assert!(all.contains("routes[0].upgrades[2]"), "{all}");
}
