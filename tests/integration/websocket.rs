//! WebSocket through the gateway with real peers (Python `websockets`, see .ci/deps): echo of
//! 1,000 messages, a tunnel outliving the route timeout, the idle timeout, auth on the
//! upgrade, `max_tunnels`, and RFC 8441 (WebSocket over HTTP/2) from a hyper h2 client.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

fn script() -> String {
    python_script("ws.py")
}

fn need_websockets() {
    need_python_modules(
        "websockets",
        "Python `websockets` is missing: run .ci/deps (pip install websockets)",
    );
}

fn echo_server() -> PyServer {
    need_websockets();
    PyServer::start("ws.py")
}

/// Runs the Python client and returns its last line.
async fn py(args: &[&str]) -> String {
    let mut all = vec![script()];
    all.extend(args.iter().map(|s| s.to_string()));
    let out = tokio::process::Command::new("python3")
        .args(&all)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        !text.is_empty(),
        "ws.py {args:?} printed nothing; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().last().unwrap().to_owned()
}

async fn gateway(backend: SocketAddr, limits: &str, route_extra: &str) -> TestGateway {
    let toml = config()
        .no_access_log()
        .toml(limits)
        .upstream("ws", &[backend])
        .provider(
            "hs",
            "https://issuer.test",
            &["HS256"],
            "secret_file = \"hs.secret\"",
        )
        .route_with(
            "open",
            "/open",
            "ws",
            &format!("timeout = \"200ms\"\n{route_extra}"),
        )
        .route_with("auth", "/auth", "ws", "auth = { provider = \"hs\" }")
        .build();
    TestGateway::start_with_files(&toml, &[("hs.secret", SECRET)]).await
}

fn ws_url(gw: &TestGateway, path: &str) -> String {
    format!("ws://{}{}", gw.addr, path)
}

#[tokio::test]
async fn echoes_a_thousand_messages_past_the_route_timeout() {
    let echo = echo_server();
    let gw = gateway(echo.addr, "", "").await;
    // The route's timeout is 200 ms: the tunnel lives on for 0.5 s past the 101.
    let out = py(&["client", &ws_url(&gw, "/open"), "1000", "0.5"]).await;
    assert_eq!(out, "echoed 1001");
    let metrics = gw.running().gateway.runtime().metrics.encode();
    assert!(
        metrics.contains("portico_tunnel_bytes_total{route=\"open\",direction=\"up\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn idle_tunnels_are_closed() {
    let echo = echo_server();
    let gw = gateway(echo.addr, "[limits]\ntunnel_idle_timeout = \"300ms\"", "").await;
    let out = py(&["idle", &ws_url(&gw, "/open"), "5"]).await;
    let secs: f64 = out
        .strip_prefix("closed ")
        .unwrap_or_else(|| panic!("tunnel not closed: {out}"))
        .parse()
        .unwrap();
    assert!((0.25..4.0).contains(&secs), "closed after {secs} s");
}

#[tokio::test]
async fn upgrade_needs_a_token() {
    let echo = echo_server();
    let gw = gateway(echo.addr, "", "").await;
    assert_eq!(
        py(&["client", &ws_url(&gw, "/auth"), "1", "0"]).await,
        "refused 401"
    );
    let token = hs256(
        SECRET,
        &serde_json::json!({"iss": "https://issuer.test", "aud": "portico", "sub": "u1",
                            "exp": unix_now() + 600}),
    );
    assert_eq!(
        py(&["client", &ws_url(&gw, "/auth"), "3", "0", &token]).await,
        "echoed 4"
    );
}

#[tokio::test]
async fn max_tunnels_caps_open_tunnels() {
    let echo = echo_server();
    let gw = gateway(echo.addr, "", "max_tunnels = 1").await;
    let url = ws_url(&gw, "/open");
    let first = tokio::spawn({
        let url = url.clone();
        // Held open 6 s: long enough for a second Python client to start on a loaded machine.
        async move { py(&["client", &url, "1", "6"]).await }
    });
    // The first tunnel is open (bounded wait on the gauge).
    let metrics = || gw.running().gateway.runtime().metrics.encode();
    let open = "portico_tunnels_open{route=\"open\"} 1";
    for _ in 0..500 {
        if metrics().contains(open) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics().contains(open), "the first tunnel never opened");
    assert_eq!(py(&["client", &url, "1", "0"]).await, "refused 503");
    assert_eq!(first.await.unwrap(), "echoed 2");
}

/// One masked client text frame (RFC 6455 §5.2), payload under 126 bytes.
fn client_frame(text: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | text.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[tokio::test]
async fn websocket_over_h2_extended_connect() {
    let echo = echo_server();
    let gw = gateway(echo.addr, "", "").await;
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = Request::connect(format!("http://{}/open", gw.addr))
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("no answer")
        .expect("extended CONNECT refused");
    assert_eq!(resp.status(), 200);
    let upgraded = hyper::upgrade::on(&mut resp).await.unwrap();
    let mut io = TokioIo::new(upgraded);
    io.write_all(&client_frame(b"over h2")).await.unwrap();
    let mut head = [0u8; 2];
    io.read_exact(&mut head).await.unwrap();
    assert_eq!(head, [0x81, 7], "an unmasked text frame of 7 bytes");
    let mut payload = [0u8; 7];
    io.read_exact(&mut payload).await.unwrap();
    assert_eq!(&payload, b"over h2");
}
