//! etcd discovery against a real etcd started by the test: keys put and deleted under the
//! prefix move traffic; while etcd is down the last set keeps serving; after a restart the
//! gateway lists again and follows new changes; a request in flight to an endpoint whose key
//! is deleted completes.

use crate::support;

use std::time::Duration;

use support::*;

const PREFIX: &str = "/services/orders/";

fn config(etcd: &Etcd) -> String {
    support::config()
        .admin()
        .no_access_log()
        .toml(&format!("[discovery.etcd]\nendpoints = [\"{}\"]", etcd.url))
        .upstream_with(
            "orders",
            &[] as &[&str],
            &format!("discovery = {{ etcd = \"{PREFIX}\" }}"),
        )
        .route("orders", "/orders", "orders")
        .route("slow", "/slow", "orders")
        .build()
}

fn record(b: &Backend) -> String {
    format!(
        r#"{{"address": "{}", "weight": 1, "metadata": {{"zone": "a"}}}}"#,
        b.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_move_traffic_and_a_restarted_etcd_resyncs() {
    let mut etcd = Etcd::start().await;
    let a = Backend::echo("a").await;
    let b = Backend::echo("b").await;
    let c = Backend::echo("c").await;
    etcd.put(&format!("{PREFIX}a"), &record(&a)).await;
    // A key outside the prefix is not read.
    etcd.put("/services/other/x", &record(&c)).await;
    let gw = TestGateway::start(&config(&etcd)).await;
    wait_routed(&gw, "/orders/x", &a, Duration::from_secs(10)).await;
    let up = admin_get(gw.running(), "/admin/upstreams").await.json();
    assert_eq!(up["upstreams"][0]["discovery"], "etcd");
    assert_eq!(up["upstreams"][0]["endpoints"][0]["source"], "etcd");
    assert_eq!(up["upstreams"][0]["endpoints"].as_array().unwrap().len(), 1);

    // A put adds, a delete removes.
    etcd.put(&format!("{PREFIX}b"), &record(&b)).await;
    wait_routed(&gw, "/orders/x", &b, Duration::from_secs(5)).await;
    etcd.delete(&format!("{PREFIX}a")).await;
    wait_only(&gw, &b, 10).await;

    // etcd goes away: the last set keeps serving, and the failures are counted.
    etcd.kill();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        for _ in 0..5 {
            assert_eq!(get(&gw.url("/orders/x")).await.status, 200);
        }
        let m = scrape(gw.running()).await;
        let errors = metric(
            &m,
            "portico_discovery_updates_total",
            &[
                ("upstream", "orders"),
                ("source", "etcd"),
                ("result", "error"),
            ],
        )
        .unwrap_or(0.0);
        if errors >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "no failed etcd update counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_only(&gw, &b, 10).await;

    // Back: the gateway lists again and follows changes made since.
    etcd.restart().await;
    etcd.put(&format!("{PREFIX}c"), &record(&c)).await;
    etcd.delete(&format!("{PREFIX}b")).await;
    wait_only(&gw, &c, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_to_a_deleted_key_completes() {
    let etcd = Etcd::start().await;
    let held = HeldBackend::start().await;
    let other = Backend::echo("other").await;
    etcd.put(&format!("{PREFIX}held"), &record(&held.backend))
        .await;
    let gw = TestGateway::start(&config(&etcd)).await;
    wait_routed(&gw, "/orders/x", &held.backend, Duration::from_secs(10)).await;
    assert_in_flight_completes(&gw, &held, &other, async {
        etcd.put(&format!("{PREFIX}other"), &record(&other)).await;
        etcd.delete(&format!("{PREFIX}held")).await;
    })
    .await;
}
