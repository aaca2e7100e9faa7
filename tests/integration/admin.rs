//! Admin API and metrics, and the graceful drain of an in-process gateway (HTTP/1 keep-alive
//! closed after the current response, GOAWAY on HTTP/2, readiness 503).

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(app: SocketAddr, dead: SocketAddr) -> String {
    support::config()
        .admin()
        .server("watch = false\nshutdown_grace = \"10s\"")
        .upstream("app", &[app])
        .upstream("down", &[dead])
        .toml(
            r#"[[routes]]
id = "app"
match = { path_prefix = "/app", methods = ["GET"] }
upstream = "app""#,
        )
        .route("slow", "/slow", "app")
        .route("down", "/down", "down")
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_count_what_happened() {
    let held = HeldBackend::start().await;
    let gw = TestGateway::start(&config(held.backend.addr, dead_addr().await)).await;
    let running = gw.running();
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/app/x")).await.status, StatusCode::OK);
    }
    assert_eq!(get(&gw.url("/nowhere")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&gw.url("/down")).await.status, StatusCode::BAD_GATEWAY);
    let url = gw.url("/slow/1");
    let slow = tokio::spawn(async move { get(&url).await });
    held.wait_arrival().await;

    let m = scrape(running).await;
    let v = |name: &str, labels: &[(&str, &str)]| metric(&m, name, labels);
    assert_eq!(
        v(
            "portico_requests_total",
            &[("route", "app"), ("code", "2xx")]
        ),
        Some(3.0)
    );
    assert_eq!(
        v("portico_requests_total", &[("route", "-"), ("code", "4xx")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "portico_requests_total",
            &[("route", "down"), ("code", "5xx")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "portico_request_duration_seconds_count",
            &[("route", "app")]
        ),
        Some(3.0)
    );
    let buckets = m
        .samples
        .iter()
        .find(|s| {
            s.metric == "portico_request_duration_seconds" && s.labels.get("route") == Some("app")
        })
        .expect("latency histogram of route app");
    match &buckets.value {
        prometheus_parse::Value::Histogram(b) => {
            assert!(b.len() >= 10, "{b:?}");
            assert_eq!(
                b.last().unwrap().count,
                3.0,
                "+Inf bucket holds every request"
            );
        }
        other => panic!("not a histogram: {other:?}"),
    }
    assert_eq!(
        v(
            "portico_upstream_errors_total",
            &[("upstream", "down"), ("kind", "connect")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v("portico_requests_in_flight", &[]),
        Some(1.0),
        "the held request"
    );
    assert_eq!(v("portico_config_generation", &[]), Some(1.0));
    assert_eq!(
        v("portico_config_reloads_total", &[("outcome", "success")]),
        Some(0.0)
    );

    held.release(1);
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    running.gateway.reload().unwrap();
    let m = scrape(running).await;
    assert_eq!(metric(&m, "portico_requests_in_flight", &[]), Some(0.0));
    assert_eq!(metric(&m, "portico_config_generation", &[]), Some(2.0));
    assert_eq!(
        metric(
            &m,
            "portico_config_reloads_total",
            &[("outcome", "success")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "portico_requests_total",
            &[("route", "app"), ("code", "2xx")]
        ),
        Some(3.0),
        "counts survive a reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_answer_on_the_admin_listener_only() {
    let backend = Backend::echo("app").await;
    let gw = TestGateway::start(&config(backend.addr, dead_addr().await)).await;
    let running = gw.running();

    let h = admin_get(running, "/healthz").await;
    assert_eq!((h.status, &h.body[..]), (StatusCode::OK, &b"ok\n"[..]));
    let r = admin_get(running, "/readyz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ready");

    let c = admin_get(running, "/admin/config").await.json();
    let rt = running.gateway.runtime();
    assert_eq!(c["version"], rt.version);
    assert_eq!(c["version"].as_str().unwrap().len(), 16);
    assert_eq!(c["generation"], 1);
    assert!(c["loaded_at"].as_str().unwrap().ends_with('Z'));
    // gateway.toml, then the BFF profiles folder (watched even while it does not exist).
    assert_eq!(
        c["sources"],
        serde_json::json!([
            gw.config_path().display().to_string(),
            gw.dir.path().join("bff").display().to_string()
        ])
    );

    let routes = admin_get(running, "/admin/routes").await.json();
    let ids: Vec<&str> = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["app", "slow", "down"]);
    assert_eq!(routes["routes"][0]["path_prefix"], "/app");
    assert_eq!(
        routes["routes"][0]["methods"],
        serde_json::json!(["GET", "HEAD"])
    );
    assert_eq!(routes["routes"][0]["upstream"], "app");

    let wrong = admin_get(running, "/admin/reload").await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.header("allow"), Some("POST"));
    assert_eq!(
        admin_get(running, "/admin/nope").await.status,
        StatusCode::NOT_FOUND
    );

    // The public listener knows nothing of the admin API.
    for path in ["/metrics", "/healthz", "/admin/config"] {
        assert_eq!(
            get(&gw.url(path)).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let a = send(
        Request::post(gw.url("/admin/reload"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_http1_keepalive_after_the_response_and_refuses_new_connections() {
    let held = HeldBackend::start().await;
    let mut gw = TestGateway::start(&config(held.backend.addr, dead_addr().await)).await;
    let addr = gw.addr;
    let admin = gw.running().admin_addr().unwrap();

    // A keep-alive HTTP/1.1 request that is in flight when shutdown starts.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /slow/1 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    held.wait_arrival().await;

    let mut running = gw.running.take().unwrap();
    running.stop_accepting().await;
    let r = get(&format!("http://{admin}/readyz")).await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "readiness turns 503 while draining"
    );
    assert_eq!(r.json()["status"], "draining");
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "new connections are refused");

    let shutdown = tokio::spawn(running.shutdown());
    held.release(1);
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut out))
        .await
        .expect("server closes the keep-alive connection after the response")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(
        tokio::time::timeout(Duration::from_secs(10), shutdown)
            .await
            .unwrap()
            .unwrap(),
        "drained in time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_sends_goaway_on_h2_and_the_in_flight_stream_completes() {
    let held = HeldBackend::start().await;
    let mut gw = TestGateway::start(&config(held.backend.addr, dead_addr().await)).await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(conn);
    let req = Request::get(format!("http://{}/slow/h2", gw.addr))
        .body(Full::default())
        .unwrap();
    let in_flight = sender.send_request(req);
    let in_flight = tokio::spawn(in_flight);
    held.wait_arrival().await;

    let running = gw.running.take().unwrap();
    let shutdown = tokio::spawn(running.shutdown());
    held.release(1);
    let resp = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .unwrap()
        .unwrap()
        .expect("the in-flight stream completes");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(std::str::from_utf8(&body).unwrap().contains("/slow/h2"));
    // After GOAWAY the connection ends cleanly and takes no new streams.
    let ended = tokio::time::timeout(Duration::from_secs(10), driver)
        .await
        .expect("connection closed");
    assert!(ended.unwrap().is_ok(), "closed with GOAWAY, not reset");
    let again = Request::get(format!("http://{}/app", gw.addr))
        .body(Full::default())
        .unwrap();
    assert!(sender.send_request(again).await.is_err());
    assert!(
        tokio::time::timeout(Duration::from_secs(10), shutdown)
            .await
            .unwrap()
            .unwrap()
    );
}
