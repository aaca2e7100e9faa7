//! Measurement, not a check (run on demand): save-to-serving latency of file-triggered reloads and
//! the RSS of the real binary after 10, 100 and 1,000 reloads.
//!
//! `cargo test --test integration reload_soak:: -- --ignored --nocapture`

use crate::support;

use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;

/// A config of 100 routes plus one route `/v{n}` that exists only in version `n`.
fn config(app: std::net::SocketAddr, n: usize) -> String {
    let base = support::config()
        .admin()
        .no_access_log()
        .upstream("app", &[app]);
    (0..100)
        .fold(base, |g, i| {
            g.route(&format!("r{i}"), &format!("/r{i}"), "app")
        })
        .toml(&format!(
            "[[routes]]\nid = \"v{n}\"\nmatch = {{ path = \"/v{n}\" }}\nupstream = \"app\""
        ))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --ignored --nocapture"]
async fn reload_latency_and_rss_over_1000_reloads() {
    let backend = Backend::echo("app").await;
    let gw = ChildGateway::start(&config(backend.addr, 0), &[("RUST_LOG", "warn")]);
    let path = gw.dir.path().join("gateway.toml");
    let client = h1_client();
    let mut latencies = Vec::new();
    let mut rss = Vec::new();
    for n in 1..=1000 {
        save_atomically(&path, &config(backend.addr, n));
        let saved = Instant::now();
        let url = gw.url(&format!("/v{n}"));
        loop {
            let req = http::Request::get(&url).body(Default::default()).unwrap();
            if send_with(&client, req).await.status == StatusCode::OK {
                break;
            }
            assert!(
                saved.elapsed() < Duration::from_secs(5),
                "reload {n} not served within 5s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(saved.elapsed());
        if [10, 100, 1000].contains(&n) {
            rss.push((n, gw.rss_kib()));
        }
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    println!(
        "save-to-serving over {} reloads: p50 {:?}, p90 {:?}, p99 {:?}, max {:?} (reload_debounce 100ms)",
        latencies.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        latencies.last().unwrap()
    );
    for (n, kib) in &rss {
        println!("RSS after {n} reloads: {kib} KiB");
    }
    let m = get(&gw.admin_url("/metrics")).await;
    let scrape = parse_metrics(std::str::from_utf8(&m.body).unwrap());
    let series = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "portico_requests_total")
        .count();
    println!("portico_requests_total series after 1000 reloads: {series}");
}
