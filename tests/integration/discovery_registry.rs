//! The built-in registry (`discovery = { registry = true }`): instances register through the
//! admin listener, traffic follows the set without a reload, a missed heartbeat drops an
//! instance after its TTL, bad registrations change nothing, and an empty set answers 503
//! `no-endpoints` at once.

use crate::support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use support::*;

fn config() -> String {
    support::config()
        .admin()
        .no_access_log()
        .upstream_with("orders", &[] as &[&str], "discovery = { registry = true }")
        .route("orders", "/orders", "orders")
        .route("slow", "/slow", "orders")
        .build()
}

async fn registry(gw: &TestGateway, method: Method, path: &str, body: &str) -> Answer {
    let addr = gw.running().admin_addr().expect("admin listener");
    send(
        Request::builder()
            .method(method)
            .uri(format!("http://{addr}/registry/{path}"))
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap(),
    )
    .await
}

fn reg(addr: std::net::SocketAddr, ttl: &str) -> String {
    format!(r#"{{"address": "{addr}", "ttl": "{ttl}", "weight": 1, "metadata": {{"zone": "a"}}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_instances_take_traffic_and_expire_without_heartbeat() {
    let a = Backend::echo("a").await;
    let b = Backend::echo("b").await;
    let gw = TestGateway::start(&config()).await;

    // Empty set: 503 no-endpoints, quickly.
    let started = Instant::now();
    let r = get(&gw.url("/orders/x")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.json()["type"]
            .as_str()
            .unwrap()
            .ends_with("/no-endpoints"),
        "{:?}",
        r.json()
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    let r = registry(&gw, Method::PUT, "orders/a", &reg(a.addr, "30s")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = registry(&gw, Method::PUT, "orders/b", &reg(b.addr, "700ms")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    // A heartbeat is the same PUT: 200.
    let r = registry(&gw, Method::PUT, "orders/a", &reg(a.addr, "30s")).await;
    assert_eq!(r.status, StatusCode::OK);

    for _ in 0..20 {
        assert_eq!(get(&gw.url("/orders/x")).await.status, StatusCode::OK);
    }
    assert!(
        a.hits() >= 5 && b.hits() >= 5,
        "a={} b={}",
        a.hits(),
        b.hits()
    );

    let list = registry(&gw, Method::GET, "orders", "").await.json();
    let ids: Vec<&str> = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(list["instances"][0]["metadata"]["zone"], "a");
    assert!(list["instances"][0]["expires_at"].is_string());

    let up = admin_get(gw.running(), "/admin/upstreams").await.json();
    let eps = up["upstreams"][0]["endpoints"].as_array().unwrap().clone();
    assert_eq!(eps.len(), 2);
    assert!(eps.iter().all(|e| e["source"] == "registry"), "{eps:?}");

    // b stops heartbeating: gone after its TTL; no request fails meanwhile.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert_eq!(get(&gw.url("/orders/x")).await.status, StatusCode::OK);
        let n = registry(&gw, Method::GET, "orders", "").await.json()["instances"]
            .as_array()
            .unwrap()
            .len();
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "b never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = b.hits();
    for _ in 0..10 {
        assert_eq!(get(&gw.url("/orders/x")).await.status, StatusCode::OK);
    }
    assert_eq!(b.hits(), before, "an expired instance got traffic");

    // Deregister the last one: the upstream answers no-endpoints again.
    let r = registry(&gw, Method::DELETE, "orders/a", "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get(&gw.url("/orders/x")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let r = registry(&gw, Method::DELETE, "orders/a", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_get_problems_and_change_nothing() {
    let a = Backend::echo("a").await;
    let cfg = support::config()
        .admin()
        .no_access_log()
        .upstream_with("orders", &[] as &[&str], "discovery = { registry = true }")
        .upstream("plain", &[a.addr])
        .route("orders", "/orders", "orders")
        .build();
    let gw = TestGateway::start(&cfg).await;
    let cases = [
        ("orders/x", r#"{"ttl": "10s"}"#, StatusCode::BAD_REQUEST),
        ("orders/x", &reg(a.addr, "0s"), StatusCode::BAD_REQUEST),
        ("orders/x", "not json", StatusCode::BAD_REQUEST),
        (
            "orders/x",
            r#"{"address": "127.0.0.1"}"#,
            StatusCode::BAD_REQUEST,
        ),
        ("nope/x", &reg(a.addr, "10s"), StatusCode::NOT_FOUND),
        ("plain/x", &reg(a.addr, "10s"), StatusCode::CONFLICT),
    ];
    for (path, body, status) in cases {
        let r = registry(&gw, Method::PUT, path, body).await;
        assert_eq!(r.status, status, "{path} {body}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let list = registry(&gw, Method::GET, "orders", "").await.json();
    assert_eq!(list["instances"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_survive_a_reload_and_static_endpoints_combine() {
    let a = Backend::echo("a").await;
    let s = Backend::echo("s").await;
    let with = |timeout: &str| {
        support::config()
            .admin()
            .no_access_log()
            .upstream_with(
                "orders",
                &[s.addr],
                &format!("discovery = {{ registry = true }}\ntimeout = \"{timeout}\""),
            )
            .route("orders", "/orders", "orders")
            .build()
    };
    let gw = TestGateway::start(&with("5s")).await;
    let r = registry(&gw, Method::PUT, "orders/a", &reg(a.addr, "30s")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    save_atomically(&gw.config_path(), &with("6s"));
    let r = admin_post(gw.running(), "/admin/reload").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    for _ in 0..20 {
        assert_eq!(get(&gw.url("/orders/x")).await.status, StatusCode::OK);
    }
    assert!(
        a.hits() >= 5 && s.hits() >= 5,
        "a={} s={}",
        a.hits(),
        s.hits()
    );
    let up = admin_get(gw.running(), "/admin/upstreams").await.json();
    let sources: Vec<&str> = up["upstreams"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["static", "registry"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_instance_closes_its_idle_connections() {
    let backend = ConnBackend::start(ConnOpts::default()).await;
    let gw = TestGateway::start(&config()).await;
    let r = registry(&gw, Method::PUT, "orders/a", &reg(backend.addr, "30s")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/orders/x")).await.status, StatusCode::OK);
    }
    assert_eq!(backend.accepted(), 1);
    assert_eq!(backend.open.get(), 1, "the pooled connection stays open");

    let r = registry(&gw, Method::DELETE, "orders/a", "").await;
    assert!(r.status.is_success(), "{:?}", r.body);
    // The next request sees the empty set; the removed endpoint's pool goes with the old set.
    let r = get(&gw.url("/orders/x")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        backend
            .open
            .wait_for(Duration::from_secs(5), |n| n == 0)
            .await,
        "the removed instance's idle connection is still open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_to_a_deregistered_instance_completes() {
    let held = HeldBackend::start().await;
    let other = Backend::echo("other").await;
    let gw = TestGateway::start(&config()).await;
    let r = registry(
        &gw,
        Method::PUT,
        "orders/held",
        &reg(held.backend.addr, "30s"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_in_flight_completes(&gw, &held, &other, async {
        let r = registry(&gw, Method::PUT, "orders/other", &reg(other.addr, "30s")).await;
        assert_eq!(r.status, StatusCode::CREATED);
        let r = registry(&gw, Method::DELETE, "orders/held", "").await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    })
    .await;
}

const TOKEN: &str = "registry-t0ken";

async fn with_token(method: Method, url: &str, token: Option<&str>, body: &str) -> Answer {
    let mut b = Request::builder().method(method).uri(url);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    send(b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_needs_the_admin_token_and_its_file_survives_a_restart() {
    let a = Backend::echo("a").await;
    let b = Backend::echo("b").await;
    let keep = tempfile::tempdir().unwrap();
    let file = keep.path().join("registry.json");
    let cfg = support::config()
        .admin()
        .no_access_log()
        .server("admin_token_env = \"PORTICO_TEST_ADMIN_TOKEN\"")
        .toml(&format!(
            "[discovery]\nregistry_file = \"{}\"",
            file.display()
        ))
        .upstream_with("orders", &[] as &[&str], "discovery = { registry = true }")
        .route("orders", "/orders", "orders")
        .build();
    let env = [("PORTICO_TEST_ADMIN_TOKEN", TOKEN)];
    let mut gw = ChildGateway::start(&cfg, &env);
    let url = |g: &ChildGateway, p: &str| g.admin_url(&format!("/registry/{p}"));

    // Without the token (or with a wrong one): 401, and nothing changes.
    for (method, path, token) in [
        (Method::PUT, "orders/a", None),
        (Method::PUT, "orders/a", Some("wrong")),
        (Method::GET, "orders", None),
        (Method::DELETE, "orders/a", None),
    ] {
        let r = with_token(method.clone(), &url(&gw, path), token, &reg(a.addr, "30s")).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} {token:?}"
        );
    }
    let r = with_token(Method::GET, &url(&gw, "orders"), Some(TOKEN), "").await;
    assert_eq!(r.json()["instances"].as_array().unwrap().len(), 0);

    let r = with_token(
        Method::PUT,
        &url(&gw, "orders/a"),
        Some(TOKEN),
        &reg(a.addr, "60s"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = with_token(
        Method::PUT,
        &url(&gw, "orders/b"),
        Some(TOKEN),
        &reg(b.addr, "2s"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Written within a sweep period (100 ms), atomically: never a partial file.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if !text.is_empty() {
            let v: serde_json::Value = serde_json::from_str(&text).expect("a whole JSON file");
            if v["upstreams"]["orders"]
                .as_object()
                .is_some_and(|o| o.len() == 2)
            {
                break;
            }
        }
        assert!(Instant::now() < until, "the registry file was not written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left: Vec<_> = std::fs::read_dir(keep.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "no temporary file left behind");

    // Killed at once (no sweep after): b's TTL passes while the gateway is down.
    gw.child.kill().unwrap();
    gw.wait_exit(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let gw = ChildGateway::start(&cfg, &env);
    let r = with_token(Method::GET, &url(&gw, "orders"), Some(TOKEN), "").await;
    let ids: Vec<String> = r.json()["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["a"], "a reloaded, the expired b left out");
    let before = a.hits();
    for _ in 0..5 {
        assert_eq!(get(&gw.url("/orders/x")).await.status, StatusCode::OK);
    }
    assert_eq!(a.hits() - before, 5);
}
