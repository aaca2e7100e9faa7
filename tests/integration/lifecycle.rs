//! The real binary as a child process: SIGTERM drains (the slow request completes, new
//! connections are refused, exit 0), a second signal exits at once, SIGHUP reloads, and the
//! admin bearer token.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

/// `server` lines; `drain_delay = "0s"` unless they set it, so SIGTERM refuses new connections
/// at once (the drain-delay test sets its own).
fn config(app: SocketAddr, server: &str, routes: &str) -> String {
    let delay = if server.contains("drain_delay") {
        ""
    } else {
        "drain_delay = \"0s\""
    };
    support::config()
        .admin()
        .server(delay)
        .server(server)
        .upstream("app", &[app])
        .route("slow", "/slow", "app")
        .toml(routes)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_slow_request_finish_refuses_new_connections_and_exits_0() {
    let held = HeldBackend::start().await;
    let mut gw = ChildGateway::start(
        &config(held.backend.addr, "shutdown_grace = \"20s\"", ""),
        &[],
    );
    let url = gw.url("/slow/1");
    let slow = tokio::spawn(async move { get(&url).await });
    held.wait_arrival().await;

    gw.signal("TERM");
    gw.stdout_line(|l| l == "draining", Duration::from_secs(10));
    let ready = get(&gw.admin_url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let refused = tokio::net::TcpStream::connect(gw.http).await;
    assert!(
        refused.is_err(),
        "new connections must be refused while draining"
    );

    held.release(1);
    let a = slow.await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["path"], "/slow/1");
    let code = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(20)));
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_tunnel_is_served_through_the_grace_period_then_closed() {
    const T: Duration = Duration::from_secs(5);
    let backend = Backend::tunnel_echo().await;
    let mut gw = ChildGateway::start(&config(backend.addr, "shutdown_grace = \"2s\"", ""), &[]);
    let mut ws = support::attack::Raw::connect(gw.http).await;
    ws.send(
        b"GET /slow/ws HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    let switched = ws.response(T).await.expect("an answer to the upgrade");
    assert_eq!(switched.status, 101, "{}", switched.head);
    ws.send(b"ping1").await;
    assert_eq!(ws.take(5, T).await.as_deref(), Some(&b"ping1"[..]));

    let signalled = std::time::Instant::now();
    gw.signal("TERM");
    gw.stdout_line(|l| l == "draining", Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws.send(b"ping2").await;
    assert_eq!(
        ws.take(5, T).await.as_deref(),
        Some(&b"ping2"[..]),
        "the tunnel still carries bytes while the gateway drains"
    );
    assert!(
        ws.closed_within(Duration::from_secs(6)).await,
        "the tunnel is closed once shutdown_grace is over"
    );
    assert!(
        signalled.elapsed() >= Duration::from_millis(1800),
        "closed before the grace period ended: {:?}",
        signalled.elapsed()
    );
    let code = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(10)));
    assert_eq!(code, 0);
    gw.log_line(|l| l.contains("grace period over"), Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let held = HeldBackend::start().await;
    let mut gw = ChildGateway::start(
        &config(held.backend.addr, "shutdown_grace = \"60s\"", ""),
        &[],
    );
    let url = gw.url("/slow/stuck");
    let _stuck = tokio::spawn(async move {
        let _ = h1_client()
            .request(Request::get(url).body(Full::<Bytes>::default()).unwrap())
            .await;
    });
    held.wait_arrival().await;
    gw.signal("TERM");
    gw.stdout_line(|l| l == "draining", Duration::from_secs(10));
    gw.signal("INT");
    let code = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(5)));
    assert_eq!(code, 1, "forced exit is reported as a failure");
    held.release(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_logs_a_one_line_summary() {
    let backend = Backend::echo("app").await;
    let gw = ChildGateway::start(&config(backend.addr, "watch = false", ""), &[]);
    assert_eq!(get(&gw.url("/fresh")).await.status, StatusCode::NOT_FOUND);
    let route = "[[routes]]\nid = \"fresh\"\nmatch = { path = \"/fresh\" }\nupstream = \"app\"\n";
    write(
        gw.dir.path(),
        "gateway.toml",
        &config(backend.addr, "watch = false", route),
    );

    gw.signal("HUP");
    let line = gw.log_line(|l| l.contains("config reloaded"), Duration::from_secs(10));
    assert!(line.contains("(SIGHUP)"), "{line}");
    assert!(line.contains("generation 2"), "{line}");
    assert!(
        line.contains("routes +1 -0 ~0 (added: fresh), upstreams +0 -0 ~0, profiles +0 -0 ~0"),
        "{line}"
    );
    assert_eq!(get(&gw.url("/fresh")).await.status, StatusCode::OK);

    // A broken file on SIGHUP: logged with file:line:col, the old config keeps serving.
    write(
        gw.dir.path(),
        "gateway.toml",
        &config(backend.addr, "watch = false", "[[routes]]\nid = 7\n"),
    );
    gw.signal("HUP");
    let err = gw.log_line(|l| l.contains("config error:"), Duration::from_secs(10));
    let path = gw.dir.path().join("gateway.toml");
    assert!(err.contains(&format!("{}:", path.display())), "{err}");
    assert_eq!(get(&gw.url("/fresh")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_asks_for_the_bearer_token_but_probes_do_not() {
    let backend = Backend::echo("app").await;
    let cfg = config(
        backend.addr,
        "admin_token_env = \"PORTICO_TEST_ADMIN_TOKEN\"",
        "",
    );
    let gw = ChildGateway::start(&cfg, &[("PORTICO_TEST_ADMIN_TOKEN", "t0ken-42")]);
    assert_eq!(get(&gw.admin_url("/healthz")).await.status, StatusCode::OK);
    assert_eq!(get(&gw.admin_url("/readyz")).await.status, StatusCode::OK);
    for path in ["/metrics", "/admin/config", "/admin/routes"] {
        let a = get(&gw.admin_url(path)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            a.header("www-authenticate"),
            Some("Bearer realm=\"portico-admin\"")
        );
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
        assert_eq!(
            a.json()["type"],
            "https://portico.dev/problems/unauthorized",
            "{path}"
        );
        let wrong = send(
            Request::get(gw.admin_url(path))
                .header("authorization", "Bearer nope")
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{path}");
        let right = send(
            Request::get(gw.admin_url(path))
                .header("authorization", "Bearer t0ken-42")
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(right.status, StatusCode::OK, "{path}");
    }
    let reload = send(
        Request::post(gw.admin_url("/admin/reload"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reload.status, StatusCode::UNAUTHORIZED);
    let reload = send(
        Request::post(gw.admin_url("/admin/reload"))
            .header("authorization", "Bearer t0ken-42")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reload.status, StatusCode::OK);
}

#[test]
fn a_named_but_unset_token_variable_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = support::config()
        .admin_unset()
        .server("admin_token_env = \"PORTICO_TEST_SURELY_UNSET_VAR\"")
        .build();
    write(dir.path(), "gateway.toml", &text);
    let path = dir.path().join("gateway.toml");
    let (code, _, stderr) = portico_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains(":3:19: server.admin_token_env: environment variable PORTICO_TEST_SURELY_UNSET_VAR is not set"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_drain_delay_readyz_is_503_and_new_connections_are_still_served() {
    let backend = Backend::echo("app").await;
    let mut gw = ChildGateway::start(
        &config(
            backend.addr,
            "drain_delay = \"3s\"\nshutdown_grace = \"5s\"",
            "",
        ),
        &[],
    );
    assert_eq!(get(&gw.admin_url("/readyz")).await.status, StatusCode::OK);
    gw.signal("TERM");
    gw.log_line(
        |l| l.contains("still accepting for server.drain_delay"),
        Duration::from_secs(10),
    );
    let ready = get(&gw.admin_url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    // A brand-new connection during the delay is accepted and served.
    let fresh = tokio::net::TcpStream::connect(gw.http).await;
    assert!(fresh.is_ok(), "the listener must accept during drain_delay");
    drop(fresh);
    let a = get(&gw.url("/slow/during-delay")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["path"], "/slow/during-delay");
    // After the delay the listener closes and the process drains and exits.
    gw.stdout_line(|l| l == "draining", Duration::from_secs(10));
    let refused = tokio::net::TcpStream::connect(gw.http).await;
    assert!(
        refused.is_err(),
        "new connections are refused after the delay"
    );
    let code = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(20)));
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_listener_serves_only_the_probes() {
    let backend = Backend::echo("app").await;
    let cfg = support::config()
        .server("health_listen = \"127.0.0.1:0\"")
        .upstream("app", &[backend.addr])
        .route("slow", "/slow", "app")
        .build();
    let gw = ChildGateway::start(&cfg, &[]);
    assert!(gw.admin.is_none(), "the admin API stays off");
    let health = gw.health.expect("ready line names the health listener");
    let url = |p: &str| format!("http://{health}{p}");
    let live = get(&url("/healthz")).await;
    assert_eq!(live.status, StatusCode::OK);
    let ready = get(&url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["status"], "ready");
    for path in [
        "/metrics",
        "/admin/config",
        "/admin/routes",
        "/status",
        "/slow/x",
    ] {
        assert_eq!(
            get(&url(path)).await.status,
            StatusCode::NOT_FOUND,
            "{path} must not be served on the probe listener"
        );
    }
    // The public listener does not serve the probes either (they are not routes).
    assert_eq!(get(&gw.url("/readyz")).await.status, StatusCode::NOT_FOUND);
}
