//! DNS discovery against a small DNS server started by the test (TTL 1): a changed A answer
//! moves traffic within about two TTLs, a failing server (SERVFAIL, then an empty answer)
//! keeps the last good set, SRV weights split traffic, and a request in flight to an endpoint
//! the answer drops completes.

use crate::support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::*;

fn config(dns: &DnsServer, source: &str) -> String {
    support::config()
        .admin()
        .no_access_log()
        .toml(&format!("[discovery]\nresolvers = [\"{}\"]", dns.addr))
        .upstream_with(
            "orders",
            &[] as &[&str],
            &format!("discovery = {{ {source} }}"),
        )
        .route("orders", "/orders", "orders")
        .route("slow", "/slow", "orders")
        .build()
}

/// Two echo backends on the same port, at 127.0.0.1 and 127.0.0.2.
async fn same_port_pair() -> (Backend, Backend) {
    for _ in 0..20 {
        let a = Backend::echo("a").await;
        let other = SocketAddr::from(([127, 0, 0, 2], a.addr.port()));
        if let Some(b) = Backend::echo_at("b", other).await {
            return (a, b);
        }
    }
    panic!("could not listen on 127.0.0.2 with the port of a 127.0.0.1 backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_answer_moves_traffic_and_a_failing_server_keeps_the_set() {
    let (a, b) = same_port_pair().await;
    let dns = DnsServer::start().await;
    dns.set_a("orders.test", &[Ipv4Addr::new(127, 0, 0, 1)]);
    let port = a.addr.port();
    let gw = TestGateway::start(&config(&dns, &format!("dns = \"orders.test:{port}\""))).await;
    wait_routed(&gw, "/orders/x", &a, Duration::from_secs(5)).await;
    for _ in 0..10 {
        assert_eq!(get(&gw.url("/orders/x")).await.status, 200);
    }
    assert_eq!(b.hits(), 0);
    let up = admin_get(gw.running(), "/admin/upstreams").await.json();
    assert_eq!(up["upstreams"][0]["discovery"], "dns");
    assert_eq!(up["upstreams"][0]["endpoints"][0]["source"], "dns");

    // The answer changes: traffic follows within about two TTLs (1 s each).
    dns.set_a("orders.test", &[Ipv4Addr::new(127, 0, 0, 2)]);
    let took = wait_routed(&gw, "/orders/x", &b, Duration::from_secs(4)).await;
    assert!(took <= Duration::from_millis(2500), "took {took:?}");
    let before = a.hits();
    for _ in 0..10 {
        assert_eq!(get(&gw.url("/orders/x")).await.status, 200);
    }
    assert_eq!(a.hits(), before, "the old address still gets traffic");

    // SERVFAIL, then an empty answer: the last good set stays, every request succeeds.
    for broken in ["servfail", "empty"] {
        match broken {
            "servfail" => dns.fail(true),
            _ => {
                dns.fail(false);
                dns.set_a("orders.test", &[]);
            }
        }
        let asked = dns.queries();
        let until = std::time::Instant::now() + Duration::from_secs(8);
        while dns.queries() < asked + 2 {
            assert_eq!(get(&gw.url("/orders/x")).await.status, 200, "{broken}");
            assert!(
                std::time::Instant::now() < until,
                "no lookups while {broken}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..5 {
            assert_eq!(get(&gw.url("/orders/x")).await.status, 200, "{broken}");
        }
    }
    let m = scrape(gw.running()).await;
    let errors = metric(
        &m,
        "portico_discovery_updates_total",
        &[
            ("upstream", "orders"),
            ("source", "dns"),
            ("result", "error"),
        ],
    )
    .unwrap_or(0.0);
    assert!(errors >= 2.0, "failed lookups counted: {errors}");
    assert_eq!(
        metric(&m, "portico_discovery_endpoints", &[("upstream", "orders")]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_weights_and_ports_split_traffic() {
    let a = Backend::echo("a").await;
    let b = Backend::echo("b").await;
    let spare = dead_addr().await;
    let dns = DnsServer::start().await;
    dns.set_a("host.test", &[Ipv4Addr::new(127, 0, 0, 1)]);
    // Priority 20 is a fallback: never used while priority 10 has records.
    dns.set_srv(
        "_http._tcp.orders.test",
        &[
            (10, 3, a.addr.port(), "host.test"),
            (10, 1, b.addr.port(), "host.test"),
            (20, 5, spare.port(), "host.test"),
        ],
    );
    let gw = TestGateway::start(&config(&dns, "srv = \"_http._tcp.orders.test\"")).await;
    wait_routed(&gw, "/orders/x", &a, Duration::from_secs(5)).await;
    let (a0, b0) = (a.hits(), b.hits());
    for _ in 0..400 {
        assert_eq!(get(&gw.url("/orders/x")).await.status, 200);
    }
    let (na, nb) = ((a.hits() - a0) as f64, (b.hits() - b0) as f64);
    let share = na / (na + nb);
    assert!((0.70..=0.80).contains(&share), "a got {na}, b got {nb}");
    let up = admin_get(gw.running(), "/admin/upstreams").await.json();
    assert_eq!(up["upstreams"][0]["discovery"], "srv");
    assert_eq!(up["upstreams"][0]["endpoints"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_to_a_dropped_srv_target_completes() {
    let held = HeldBackend::start().await;
    let other = Backend::echo("other").await;
    let dns = DnsServer::start().await;
    dns.set_a("host.test", &[Ipv4Addr::new(127, 0, 0, 1)]);
    dns.set_srv(
        "_http._tcp.orders.test",
        &[(10, 1, held.backend.addr.port(), "host.test")],
    );
    let gw = TestGateway::start(&config(&dns, "srv = \"_http._tcp.orders.test\"")).await;
    wait_routed(&gw, "/orders/x", &held.backend, Duration::from_secs(5)).await;
    assert_in_flight_completes(&gw, &held, &other, async {
        dns.set_srv(
            "_http._tcp.orders.test",
            &[(10, 1, other.addr.port(), "host.test")],
        );
    })
    .await;
}
