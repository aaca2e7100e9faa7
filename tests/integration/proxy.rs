//! Edge proxy foundation: routing, streaming bodies, headers, errors, upstream failover.

use crate::support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use support::*;

/// Access log off, upstream `app` on `endpoints` (plus `extra` lines), then `routes`.
fn app_config(endpoints: &[impl std::fmt::Display], extra: &str, routes: &str) -> GatewayToml {
    config()
        .no_access_log()
        .upstream_with("app", endpoints, extra)
        .toml(routes)
}

async fn one_backend_gateway(backend: &Backend, routes: &str) -> TestGateway {
    TestGateway::start(&app_config(&[backend.addr], "timeout = \"2s\"", routes).build()).await
}

const API_ROUTE: &str = r#"
[[routes]]
id = "api"
match = { path_prefix = "/api/users", methods = ["GET", "POST"] }
upstream = "app"
strip_prefix = "/api"
"#;

#[tokio::test]
async fn get_and_post_with_bodies_and_strip_prefix() {
    let backend = Backend::echo("app").await;
    let gw = one_backend_gateway(&backend, API_ROUTE).await;

    let a = get(&gw.url("/api/users/7?x=1")).await;
    assert_eq!(a.status, 200);
    let j = a.json();
    assert_eq!(j["path"], "/users/7", "strip_prefix removes /api");
    assert_eq!(j["query"], "x=1");

    // 1 MiB up with content-length.
    let up = payload(1 << 20);
    let req = Request::post(gw.url("/api/users"))
        .body(Full::new(Bytes::from(up.clone())))
        .unwrap();
    let j = send(req).await.json();
    assert_eq!(j["body_len"], 1 << 20);
    assert_eq!(j["body_sum"], checksum(&up));
    assert_eq!(j["headers"]["content-length"][0], "1048576");

    // 1 MiB up chunked (no content-length), over a raw connection.
    let raw_req = chunked_post("/api/users", up.chunks(64 * 1024));
    let text = raw(gw.addr, &raw_req).await;
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(300)]
    );
    assert!(
        text.contains(&format!("\"body_sum\":{}", checksum(&up))),
        "chunked body arrived whole"
    );
}

#[tokio::test]
async fn large_download_streams_with_and_without_content_length() {
    const SIZE: usize = 8_000_000;
    let backend = Backend::start(|req: Request<hyper::body::Incoming>| async move {
        let data = Bytes::from(payload(SIZE));
        if req.uri().path().ends_with("/chunked") {
            let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = data
                .chunks(100_000)
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            let body = StreamBody::new(futures_util::stream::iter(chunks));
            Response::new(BodyExt::boxed(body))
        } else {
            Response::new(full(data))
        }
    })
    .await;
    let gw = one_backend_gateway(&backend, API_ROUTE).await;
    for path in ["/api/users/big", "/api/users/chunked"] {
        let a = get(&gw.url(path)).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body.len(), SIZE, "{path}");
        assert_eq!(checksum(&a.body), checksum(&payload(SIZE)), "{path}");
    }
}

#[tokio::test]
async fn not_found_and_method_not_allowed_are_problem_json() {
    let backend = Backend::echo("app").await;
    let gw = one_backend_gateway(&backend, API_ROUTE).await;

    let a = get(&gw.url("/nowhere")).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    let j = a.json();
    assert_eq!(j["status"], 404);
    assert_eq!(j["type"], "https://portico.dev/problems/no-route");
    assert_eq!(j["request_id"], a.header("x-request-id").unwrap());

    // Segment-aware prefix: /api/usersX is not under /api/users.
    assert_eq!(get(&gw.url("/api/usersX")).await.status, 404);

    let req = Request::delete(gw.url("/api/users/1"))
        .body(Full::default())
        .unwrap();
    let a = send(req).await;
    assert_eq!(a.status, 405);
    assert_eq!(a.header("allow"), Some("GET, HEAD, POST"));
    assert_eq!(
        a.json()["type"],
        "https://portico.dev/problems/method-not-allowed"
    );
    assert_eq!(backend.hits(), 0, "errors never reach the upstream");
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let backend = Backend::start(|req: Request<hyper::body::Incoming>| async move {
        let seen: Vec<String> = req.headers().keys().map(|k| k.to_string()).collect();
        let mut r = json_response(200, serde_json::json!({ "seen": seen }));
        let h = r.headers_mut();
        h.insert("connection", "x-upstream-secret".parse().unwrap());
        h.insert("x-upstream-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authenticate", "Basic".parse().unwrap());
        h.insert("x-normal", "yes".parse().unwrap());
        r
    })
    .await;
    let gw = one_backend_gateway(&backend, API_ROUTE).await;
    let text = raw(
        gw.addr,
        b"GET /api/users/1 HTTP/1.1\r\nhost: gw\r\nconnection: close, x-drop-me\r\nx-drop-me: 1\r\n\
          keep-alive: 300\r\nproxy-authorization: Basic Zm9v\r\nproxy-connection: keep-alive\r\n\
          te: gzip\r\ntrailer: x-t\r\nupgrade: h2c\r\nx-keep-me: 1\r\n\r\n",
    )
    .await;
    let lower = text.to_ascii_lowercase();
    let (head, body) = lower.split_once("\r\n\r\n").unwrap();
    for gone in [
        "x-drop-me",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "\"te\"",
        "trailer",
        "upgrade",
        "\"connection\"",
    ] {
        assert!(!body.contains(gone), "{gone} reached the upstream: {body}");
    }
    assert!(body.contains("x-keep-me"));
    assert!(!head.contains("x-upstream-secret"), "{head}");
    assert!(!head.contains("keep-alive"), "{head}");
    assert!(!head.contains("proxy-authenticate"), "{head}");
    assert!(head.contains("x-normal: yes"));
}

#[tokio::test]
async fn forwarded_headers_from_untrusted_peer_are_replaced() {
    let backend = Backend::echo("app").await;
    let gw = one_backend_gateway(&backend, API_ROUTE).await;
    let headers = [
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("forwarded", "for=6.6.6.6"),
        ("host", "shop.example:8080"),
    ];
    let j = get_with(&gw.url("/api/users/1"), &headers).await.json();
    let seen = |name: &str| j["headers"][name].clone();
    assert_eq!(seen("x-forwarded-for"), serde_json::json!(["127.0.0.1"]));
    assert_eq!(seen("x-forwarded-proto"), serde_json::json!(["http"]));
    assert_eq!(
        seen("x-forwarded-host"),
        serde_json::json!(["shop.example:8080"])
    );
    assert!(j["headers"].get("forwarded").is_none());
    // Host is the endpoint's unless the route preserves it.
    assert_eq!(seen("host"), serde_json::json!([backend.addr.to_string()]));
}

#[tokio::test]
async fn forwarded_for_from_trusted_proxy_is_appended() {
    let backend = Backend::echo("app").await;
    let cfg = app_config(&[backend.addr], "", API_ROUTE)
        .server("trusted_proxies = [\"127.0.0.0/8\"]")
        .build();
    let gw = TestGateway::start(&cfg).await;
    let headers = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
    ];
    let j = get_with(&gw.url("/api/users/1"), &headers).await.json();
    assert_eq!(
        j["headers"]["x-forwarded-for"],
        serde_json::json!(["203.0.113.9, 127.0.0.1"])
    );
    assert_eq!(
        j["headers"]["x-forwarded-proto"],
        serde_json::json!(["https"])
    );
}

#[tokio::test]
async fn request_id_round_trip() {
    let backend = Backend::echo("app").await;
    let gw = one_backend_gateway(&backend, API_ROUTE).await;
    let req = Request::get(gw.url("/api/users/1"))
        .header("x-request-id", "trace-abc.123")
        .body(Full::default())
        .unwrap();
    let a = send(req).await;
    assert_eq!(a.header("x-request-id"), Some("trace-abc.123"));
    assert_eq!(
        a.json()["headers"]["x-request-id"],
        serde_json::json!(["trace-abc.123"])
    );

    // An invalid one is replaced, and the new id is sent both ways.
    let req = Request::get(gw.url("/api/users/1"))
        .header("x-request-id", "bad id!")
        .body(Full::default())
        .unwrap();
    let a = send(req).await;
    let id = a.header("x-request-id").unwrap().to_string();
    assert_ne!(id, "bad id!");
    assert_eq!(a.json()["headers"]["x-request-id"], serde_json::json!([id]));
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let backend = Backend::echo("app").await;
    let gw = one_backend_gateway(&backend, API_ROUTE).await;
    let client = h2c_client();
    let req = Request::post(gw.url("/api/users/5"))
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let a = send_with(&client, req).await;
    assert_eq!(a.status, 200);
    let j = a.json();
    assert_eq!(j["path"], "/users/5");
    assert_eq!(j["body_len"], 5);
    assert_eq!(
        j["headers"]["x-forwarded-host"],
        serde_json::json!([gw.addr.to_string()])
    );
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    let dead = dead_addr().await;
    let cfg = app_config(&[dead], "connect_timeout = \"500ms\"", API_ROUTE);
    let gw = TestGateway::start(&cfg.build()).await;
    let a = get(&gw.url("/api/users/1")).await;
    assert_eq!(a.status, 502);
    let j = a.json();
    assert_eq!(
        j["type"],
        "https://portico.dev/problems/upstream-unreachable"
    );
    assert!(
        !a.body
            .windows(5)
            .any(|w| w == dead.port().to_string().as_bytes().get(..5).unwrap_or(b"")),
        "no internal address in body"
    );
}

#[tokio::test]
async fn slow_upstream_is_504_near_its_timeout() {
    let backend = Backend::start(|_req| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        json_response(200, serde_json::json!({}))
    })
    .await;
    let routes = format!("{API_ROUTE}timeout = \"300ms\"\n");
    let gw = one_backend_gateway(&backend, &routes).await;
    let start = Instant::now();
    let a = get(&gw.url("/api/users/1")).await;
    let took = start.elapsed();
    assert_eq!(a.status, 504);
    assert_eq!(
        a.json()["type"],
        "https://portico.dev/problems/upstream-timeout"
    );
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
}

#[tokio::test]
async fn round_robin_and_failover() {
    let a = Backend::echo("a").await;
    let b = Backend::echo("b").await;
    let gw = TestGateway::start(&app_config(&[a.addr, b.addr], "", API_ROUTE).build()).await;
    let client = h1_client();
    let mut seen = Vec::new();
    for _ in 0..10 {
        let r = send_with(
            &client,
            Request::get(gw.url("/api/users/1"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        seen.push(r.header("x-backend").unwrap().to_string());
    }
    assert_eq!(seen.iter().filter(|s| *s == "a").count(), 5, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] != w[1]),
        "alternates: {seen:?}"
    );

    // One endpoint down: every request still succeeds (POST bodies included).
    let dead = dead_addr().await;
    let gw = TestGateway::start(&app_config(&[dead, b.addr], "", API_ROUTE).build()).await;
    for i in 0..6 {
        let req = Request::post(gw.url("/api/users"))
            .body(Full::new(Bytes::from(format!("body-{i}"))))
            .unwrap();
        let r = send_with(&client, req).await;
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.json()["body_len"], 6);
    }
}

#[tokio::test]
async fn body_too_large_is_413_up_front_and_while_streaming() {
    let backend = Backend::echo("app").await;
    let cfg = app_config(&[backend.addr], "", API_ROUTE)
        .toml("[limits]\nmax_body_bytes = \"1KiB\"")
        .build();
    let gw = TestGateway::start(&cfg).await;
    let req = Request::post(gw.url("/api/users"))
        .body(Full::new(Bytes::from(vec![b'x'; 4096])))
        .unwrap();
    let a = send(req).await;
    assert_eq!(a.status, 413);
    assert_eq!(
        a.json()["type"],
        "https://portico.dev/problems/payload-too-large"
    );
    assert_eq!(backend.hits(), 0, "refused before contacting the upstream");

    let kib = [b'y'; 1024];
    let chunked = chunked_post("/api/users", [&kib[..]; 4]);
    let text = raw(gw.addr, &chunked).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[tokio::test]
async fn malformed_requests_get_4xx() {
    let backend = Backend::echo("app").await;
    let gw = one_backend_gateway(&backend, API_ROUTE).await;
    let garbage = raw(gw.addr, b"NOT A REQUEST\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    assert_bare_problem(&garbage, "bad-request");
    let dots = raw(
        gw.addr,
        b"GET /api/users/../admin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(dots.starts_with("HTTP/1.1 400"), "{dots}");
    let encoded = raw(
        gw.addr,
        b"GET /api/users/%2e%2e/admin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(encoded.starts_with("HTTP/1.1 400"), "{encoded}");
    let huge = format!(
        "GET /api/users/1 HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let too_big = raw(gw.addr, huge.as_bytes()).await;
    assert!(
        too_big.starts_with("HTTP/1.1 431"),
        "{}",
        &too_big[..too_big.len().min(100)]
    );
    assert_bare_problem(&too_big, "header-too-large");
    let fields: String = (0..150).map(|i| format!("x-f{i}: v\r\n")).collect();
    let many = raw(
        gw.addr,
        format!("GET /api/users/1 HTTP/1.1\r\nhost: x\r\n{fields}\r\n").as_bytes(),
    )
    .await;
    assert!(many.starts_with("HTTP/1.1 431"), "{many}");
    assert_bare_problem(&many, "header-too-large");
    assert_eq!(backend.hits(), 0);
}

/// hyper refuses these heads before any handler runs; the gateway still answers them with
/// problem+json, a request id (header and body) and `connection: close`.
fn assert_bare_problem(response: &str, slug: &str) {
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("x-request-id")
        .to_string();
    let json: serde_json::Value = serde_json::from_str(body).expect("problem+json body");
    assert_eq!(json["type"], format!("https://portico.dev/problems/{slug}"));
    assert_eq!(
        json["request_id"].as_str().unwrap().to_ascii_lowercase(),
        id
    );
}

#[tokio::test]
async fn host_exact_path_and_header_precedence() {
    let backend = Backend::echo("app").await;
    let routes = r#"
[[routes]]
id = "catch-all"
match = { path_prefix = "/" }
upstream = "app"
request_headers = { set = { "x-route" = "catch-all" } }

[[routes]]
id = "api"
match = { path_prefix = "/api" }
upstream = "app"
request_headers = { set = { "x-route" = "api" } }

[[routes]]
id = "api-exact"
match = { path = "/api/status" }
upstream = "app"
request_headers = { set = { "x-route" = "api-exact" } }

[[routes]]
id = "beta"
match = { path_prefix = "/api", headers = { "x-env" = "beta" } }
upstream = "app"
request_headers = { set = { "x-route" = "beta" } }

[[routes]]
id = "host"
match = { host = "admin.example.com", path_prefix = "/" }
upstream = "app"
request_headers = { set = { "x-route" = "host" } }

[[routes]]
id = "wild"
match = { host = "*.example.com", path_prefix = "/" }
upstream = "app"
request_headers = { set = { "x-route" = "wild" }, remove = ["x-secret"] }
response_headers = { add = { "x-gateway" = "portico" } }
"#;
    let gw = one_backend_gateway(&backend, routes).await;
    let route_of = |host: &'static str, path: &'static str, env: Option<&'static str>| {
        let url = gw.url(path);
        async move {
            let mut b = Request::get(url)
                .header("host", host)
                .header("x-secret", "s");
            if let Some(e) = env {
                b = b.header("x-env", e);
            }
            let a = send(b.body(Full::default()).unwrap()).await;
            (
                a.json()["headers"]["x-route"][0]
                    .as_str()
                    .unwrap()
                    .to_string(),
                a,
            )
        }
    };
    assert_eq!(route_of("x.test", "/other", None).await.0, "catch-all");
    assert_eq!(route_of("x.test", "/api/v1", None).await.0, "api");
    assert_eq!(route_of("x.test", "/api/status", None).await.0, "api-exact");
    assert_eq!(
        route_of("x.test", "/api/v1", Some("beta")).await.0,
        "api",
        "file order breaks the tie"
    );
    assert_eq!(
        route_of("ADMIN.example.com:80", "/api/v1", None).await.0,
        "host"
    );
    let (r, a) = route_of("a.b.example.com", "/x", None).await;
    assert_eq!(r, "wild");
    assert!(a.json()["headers"].get("x-secret").is_none());
    assert_eq!(a.header("x-gateway"), Some("portico"));
    assert_eq!(
        route_of("example.com", "/x", None).await.0,
        "catch-all",
        "*.example.com needs a label"
    );
}

#[tokio::test]
async fn websocket_style_upgrade_is_tunnelled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = Backend::start(|mut req: Request<hyper::body::Incoming>| async move {
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
        *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", "echo".parse().unwrap());
        r.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        r
    })
    .await;
    // The route allow-lists the test protocol (the default is WebSocket only).
    let route = format!("{API_ROUTE}upgrades = [\"echo\"]\n");
    let gw = one_backend_gateway(&backend, &route).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"GET /api/users/ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    s.write_all(b"hello").await.unwrap();
    let mut reply = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&reply, b"HELLO");
}

#[tokio::test]
async fn body_limit_still_holds_after_failover() {
    let live = Backend::echo("live").await;
    let dead = dead_addr().await;
    let cfg = app_config(&[dead, live.addr], "", API_ROUTE)
        .toml("[limits]\nmax_body_bytes = \"1KiB\"")
        .build();
    let gw = TestGateway::start(&cfg).await;
    // Chunked, so the size is only known while streaming; the first endpoint refuses, the body
    // is replayed to the second one under the same cap.
    let kib = [b'z'; 1024];
    let chunked = chunked_post("/api/users", [&kib[..]; 4]);
    let text = raw(gw.addr, &chunked).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}
