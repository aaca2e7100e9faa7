//! Fault injection: delays, aborts, header control only where enabled, delays within the route
//! deadline, and the fault label in metrics and the access log.

use crate::support;

use std::time::{Duration, Instant};

use support::traffic::*;
use support::*;

fn fault_config(backend: &Recorder, routes: &str) -> String {
    traffic_config(&[("app", backend.backend.addr)], routes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_on_every_request_adds_the_delay() {
    let app = Recorder::start("app", Duration::ZERO).await;
    let gw = TestGateway::start(&fault_config(
        &app,
        r#"
[[routes]]
id = "slow"
match = { path_prefix = "/slow" }
upstream = "app"
fault = { delay = "150ms", delay_percent = 100 }

[[routes]]
id = "fast"
match = { path_prefix = "/fast" }
upstream = "app"
"#,
    ))
    .await;
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(get(&gw.url("/slow/x")).await.status, 200);
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    assert_eq!(get(&gw.url("/fast/x")).await.status, 200);
    assert!(started.elapsed() < Duration::from_millis(150));
    let m = scrape(gw.running()).await;
    let delayed = metric(
        &m,
        "portico_fault_injected_total",
        &[("route", "slow"), ("kind", "delay")],
    );
    assert_eq!(delayed, Some(5.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_half_the_requests_gives_about_half_fault_problems() {
    let app = Recorder::start("app", Duration::ZERO).await;
    let gw = TestGateway::start(&fault_config(
        &app,
        r#"
[[routes]]
id = "flaky"
match = { path_prefix = "/flaky" }
upstream = "app"
fault = { abort_status = 503, abort_percent = 50 }
"#,
    ))
    .await;
    let outcomes = fire(vec![Shot::get(&gw.url("/flaky")); 1000], 4).await;
    let aborted = outcomes.iter().filter(|o| o.status == 503).count();
    let ok = outcomes.iter().filter(|o| o.status == 200).count();
    assert_eq!(aborted + ok, 1000);
    assert!(
        (420..=580).contains(&aborted),
        "{aborted} of 1000 aborted at 50%"
    );
    assert_eq!(
        app.seen().len(),
        ok,
        "aborted requests never reach the upstream"
    );

    let a = loop {
        let a = get(&gw.url("/flaky")).await;
        if a.status == 503 {
            break a;
        }
    };
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        a.json()["type"],
        "https://portico.dev/problems/fault-injected"
    );
    let m = scrape(gw.running()).await;
    let counted = metric(
        &m,
        "portico_fault_injected_total",
        &[("route", "flaky"), ("kind", "abort")],
    );
    assert_eq!(counted, Some(aborted as f64 + 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_headers_work_only_where_the_route_allows_them() {
    let app = Recorder::start("app", Duration::ZERO).await;
    let gw = TestGateway::start(&fault_config(
        &app,
        r#"
[[routes]]
id = "controlled"
match = { path_prefix = "/controlled" }
upstream = "app"
fault = { header_control = true }

[[routes]]
id = "closed"
match = { path_prefix = "/closed" }
upstream = "app"
fault = { abort_status = 500, abort_percent = 0 }

[[routes]]
id = "plain"
match = { path_prefix = "/plain" }
upstream = "app"
"#,
    ))
    .await;
    let abort = [("portico-fault-abort", "418")];
    let a = get_with(&gw.url("/controlled/x"), &abort).await;
    assert_eq!(a.status.as_u16(), 418);
    assert_eq!(
        a.json()["type"],
        "https://portico.dev/problems/fault-injected"
    );

    let started = Instant::now();
    let d = get_with(
        &gw.url("/controlled/x"),
        &[("portico-fault-delay-ms", "120")],
    )
    .await;
    assert_eq!(d.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(120));
    // Without the headers, a header-controlled route injects nothing.
    assert_eq!(get(&gw.url("/controlled/x")).await.status, 200);

    for path in ["/closed/x", "/plain/x"] {
        let started = Instant::now();
        let a = get_with(
            &gw.url(path),
            &[
                ("portico-fault-abort", "503"),
                ("portico-fault-delay-ms", "2000"),
            ],
        )
        .await;
        assert_eq!(a.status, 200, "{path} ignores fault headers");
        assert!(started.elapsed() < Duration::from_millis(1000));
    }
    // The controlled route consumed its headers; the others pass them on untouched.
    let seen = app.seen();
    let carried = |r: &Recorded| {
        r.headers
            .iter()
            .any(|(k, _)| k.starts_with("portico-fault"))
    };
    assert!(
        !carried(&seen[0]),
        "the consumed delay header reached the upstream"
    );
    assert!(seen[2..].iter().all(carried));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_past_the_route_timeout_ends_in_504_at_the_timeout() {
    let app = Recorder::start("app", Duration::ZERO).await;
    let gw = TestGateway::start(&fault_config(
        &app,
        r#"
[[routes]]
id = "r"
match = { path_prefix = "/r" }
upstream = "app"
timeout = "200ms"
fault = { delay = "5s" }
"#,
    ))
    .await;
    let started = Instant::now();
    let a = get(&gw.url("/r")).await;
    let took = started.elapsed();
    assert_eq!(a.status.as_u16(), 504);
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(app.seen().is_empty());
}

#[test]
fn the_access_log_labels_injected_faults() {
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = ""
watch = false

[upstreams.app]
endpoints = ["{}"]

[[routes]]
id = "r"
match = {{ path_prefix = "/r" }}
upstream = "app"
fault = {{ abort_status = 503 }}
"#,
        backend.local_addr().unwrap()
    );
    let gw = ChildGateway::start(&text, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = rt.block_on(get(&gw.url("/r/x")));
    assert_eq!(a.status.as_u16(), 503);
    let line = gw.log_line(
        |l| l.contains("access") && l.contains("route=\"r\""),
        Duration::from_secs(10),
    );
    assert!(line.contains("status=503"), "{line}");
    assert!(line.trim_end().ends_with("fault=abort"), "{line}");
}
