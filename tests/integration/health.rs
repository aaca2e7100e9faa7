//! Endpoint health over real backends on 127.0.0.1:0: active checks (out and back in, with no
//! failed client request), outlier ejection (growing ejections), panic mode, carry-over of
//! health across reloads, checks stopping with their upstream, and the metrics.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::balance::*;
use support::*;

const CHECKS: &str = r#"
[upstreams.app.health]
path = "/healthz"
interval = "50ms"
timeout = "40ms"
unhealthy_threshold = 2
healthy_threshold = 2
"#;

/// A gateway with upstream `app` over `eps` plus `extra` lines of its table (and sub-tables),
/// behind the catch-all route; `more` is appended (other upstreams and routes).
fn gateway(eps: &[&Switchable], extra: &str, more: &str) -> String {
    let items: Vec<String> = eps.iter().map(|b| format!("\"{}\"", b.addr())).collect();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
watch = false

[log]
access_log = false

[[routes]]
id = "app"
match = {{ path_prefix = "/" }}
upstream = "app"
{more}

[upstreams.app]
endpoints = [{}]
{extra}
"#,
        items.join(", ")
    )
}

/// Sends GETs to `url` until `stop`, counting answers that are not 200.
fn background_traffic(
    url: String,
    stop: Arc<AtomicBool>,
    bad: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let client = h1_client();
        let mut sent = 0;
        while !stop.load(Ordering::SeqCst) && sent < 20_000 {
            let req = http::Request::get(&url).body(Default::default()).unwrap();
            if send_with(&client, req).await.status != 200 {
                bad.fetch_add(1, Ordering::SeqCst);
            }
            sent += 1;
        }
        sent
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_check_takes_an_endpoint_out_and_back() {
    let a = Switchable::start("a").await;
    let b = Switchable::start("b").await;
    let gw = TestGateway::start(&gateway(&[&a, &b], CHECKS, "")).await;
    let running = gw.running();
    let a_addr = a.addr().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicUsize::new(0));
    let traffic = background_traffic(gw.url("/bg"), stop.clone(), bad.clone());

    wait_endpoint(running, "app", &a_addr, Duration::from_secs(5), |e| {
        e["health"] == "healthy"
    })
    .await;
    a.health.store(500, Ordering::SeqCst);
    wait_endpoint(running, "app", &a_addr, Duration::from_secs(5), |e| {
        e["health"] == "unhealthy"
    })
    .await;
    let before = a.served();
    sequential(&gw.url("/out"), 100, &[], 200).await;
    assert_eq!(a.served(), before, "an unhealthy endpoint got traffic");

    a.health.store(200, Ordering::SeqCst);
    wait_endpoint(running, "app", &a_addr, Duration::from_secs(5), |e| {
        e["health"] == "healthy"
    })
    .await;
    let before = a.served();
    sequential(&gw.url("/back"), 100, &[], 200).await;
    assert!(
        a.served() >= before + 40,
        "a recovered endpoint takes its share again"
    );

    stop.store(true, Ordering::SeqCst);
    assert!(traffic.await.unwrap() > 0);
    assert_eq!(
        bad.load(Ordering::SeqCst),
        0,
        "no client request failed meanwhile"
    );

    let m = scrape(running).await;
    let labels = [("upstream", "app"), ("endpoint", a_addr.as_str())];
    assert_eq!(
        metric(&m, "portico_upstream_endpoint_healthy", &labels),
        Some(1.0)
    );
    let failed = metric(
        &m,
        "portico_health_checks_total",
        &[labels[0], labels[1], ("result", "bad_status")],
    );
    assert!(failed.unwrap() >= 2.0, "{failed:?}");
    let passed = metric(
        &m,
        "portico_health_checks_total",
        &[labels[0], labels[1], ("result", "success")],
    );
    assert!(passed.unwrap() >= 3.0, "{passed:?}");
}

/// Sends requests until `b` has served `n` (any status), bounded.
async fn until_served(url: &str, b: &Switchable, n: usize) {
    let client = h1_client();
    for _ in 0..200 {
        if b.served() >= n {
            return;
        }
        let req = http::Request::get(url).body(Default::default()).unwrap();
        send_with(&client, req).await;
    }
    panic!("{} served only {} of {n}", b.name, b.served());
}

fn seconds_left(e: &serde_json::Value) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    e["ejected_until"].as_f64().expect("ejected") - now
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_ejection_grows_with_each_ejection() {
    let a = Switchable::start("a").await;
    let b = Switchable::start("b").await;
    a.status.store(503, Ordering::SeqCst);
    let outlier = "[upstreams.app.outlier]\nconsecutive_failures = 5\nbase_ejection = \"500ms\"\nmax_ejection = \"10s\"";
    let gw = TestGateway::start(&gateway(&[&a, &b], outlier, "")).await;
    let running = gw.running();
    let a_addr = a.addr().to_string();
    let url = gw.url("/o");

    until_served(&url, &a, 5).await;
    let first = endpoint_status(running, "app", &a_addr).await;
    assert_eq!(first["ejections"], 1, "{first}");
    let first_left = seconds_left(&first);
    assert!(first_left <= 0.5, "{first}");
    sequential(&url, 100, &[], 200).await;
    assert_eq!(a.served(), 5, "an ejected endpoint got traffic");
    assert_eq!(
        endpoint_status(running, "app", &a_addr).await["failures"],
        5
    );

    // Back after the ejection; still failing, so ejected again, for twice as long.
    wait_endpoint(running, "app", &a_addr, Duration::from_secs(5), |e| {
        e["usable"] == true
    })
    .await;
    until_served(&url, &a, 10).await;
    let second = endpoint_status(running, "app", &a_addr).await;
    assert_eq!(second["ejections"], 2, "{second}");
    let second_left = seconds_left(&second);
    assert!(
        second_left > 0.6 && second_left > first_left,
        "{first_left} then {second_left}"
    );

    let m = scrape(running).await;
    let labels = [
        ("upstream", "app"),
        ("endpoint", a_addr.as_str()),
        ("reason", "consecutive_failures"),
    ];
    assert_eq!(
        metric(&m, "portico_upstream_ejections_total", &labels),
        Some(2.0)
    );
    let healthy = metric(&m, "portico_upstream_endpoint_healthy", &labels[..2]);
    assert_eq!(healthy, Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_endpoints_failing_means_panic_mode_not_darkness() {
    let a = Switchable::start("a").await;
    let b = Switchable::start("b").await;
    a.status.store(503, Ordering::SeqCst);
    b.status.store(503, Ordering::SeqCst);
    let outlier = "[upstreams.app.outlier]\nconsecutive_failures = 2\nbase_ejection = \"30s\"\nmax_ejected_percent = 100";
    let gw = TestGateway::start(&gateway(&[&a, &b], outlier, "")).await;
    let running = gw.running();
    sequential(&gw.url("/p"), 4, &[], 503).await;
    for b in [&a, &b] {
        let e = endpoint_status(running, "app", &b.addr().to_string()).await;
        assert_eq!(e["ejections"], 1, "{e}");
    }
    let before = a.served() + b.served();
    sequential(&gw.url("/p"), 20, &[], 503).await;
    assert_eq!(
        a.served() + b.served(),
        before + 20,
        "panic mode still sends to them"
    );
    let all = admin_get(running, "/admin/upstreams").await.json();
    assert_eq!(all["upstreams"][0]["panic"], true, "{all}");
    let m = scrape(running).await;
    let panics = metric(&m, "portico_upstream_panic_total", &[("upstream", "app")]);
    assert!(panics.unwrap() >= 20.0, "{panics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_survives_reloads_and_checks_stop_with_their_upstream() {
    let a = Switchable::start("a").await;
    let b = Switchable::start("b").await;
    let other = Switchable::start("other").await;
    let gw = TestGateway::start(&gateway(&[&a, &b], CHECKS, "")).await;
    let running = gw.running();
    let a_addr = a.addr().to_string();
    a.health.store(500, Ordering::SeqCst);
    wait_endpoint(running, "app", &a_addr, Duration::from_secs(5), |e| {
        e["health"] == "unhealthy"
    })
    .await;

    // An unrelated change keeps the upstream whole; a change to the upstream keeps the
    // health of the endpoints it still lists. Either way `a` stays out at once.
    let route = "[[routes]]\nid = \"x\"\nmatch = { path_prefix = \"/x\" }\nupstream = \"app\"";
    for extra in [CHECKS.to_string(), format!("timeout = \"3s\"\n{CHECKS}")] {
        write(
            gw.dir.path(),
            "gateway.toml",
            &gateway(&[&a, &b], &extra, route),
        );
        running.gateway.reload().unwrap();
        let e = endpoint_status(running, "app", &a_addr).await;
        assert_eq!(e["health"], "unhealthy", "{e}");
        let before = a.served();
        sequential(&gw.url("/r"), 20, &[], 200).await;
        assert_eq!(a.served(), before);
    }
    let checks = a.checks();
    wait_endpoint(running, "app", &a_addr, Duration::from_secs(5), |_| {
        a.checks() > checks + 2
    })
    .await;

    // Remove `app` (the routes now go to `other`): its checks stop.
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
watch = false

[upstreams.other]
endpoints = ["{}"]

[[routes]]
id = "app"
match = {{ path_prefix = "/" }}
upstream = "other"
"#,
        other.addr()
    );
    write(gw.dir.path(), "gateway.toml", &text);
    running.gateway.reload().unwrap();
    // Let a check that was under way finish, then watch for several intervals.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (ca, cb) = (a.checks(), b.checks());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        (a.checks(), b.checks()),
        (ca, cb),
        "checks of a removed upstream go on"
    );
    let m = scrape(running).await;
    assert_eq!(
        metric(
            &m,
            "portico_upstream_endpoint_healthy",
            &[("upstream", "app")]
        ),
        None,
        "series of removed endpoints are dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoints_are_checked_over_tls() {
    use support::tls::{Pki, TlsBackend, server_config};
    let pki = Pki::new("Health CA");
    let backend = TlsBackend::start(server_config(&pki.server(&["localhost"]), None)).await;
    let address = format!("https://localhost:{}", backend.addr.port());
    // The backend answers 200 everywhere; expecting 204 makes every check a bad status, which
    // proves each one got an answer over TLS (a plain-HTTP attempt would be an error).
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
watch = false

[upstreams.secure]
endpoints = ["{address}"]
ca_file = "ca.pem"
[upstreams.secure.health]
path = "/healthz"
interval = "300ms"
timeout = "300ms"
expected_statuses = [204]

[[routes]]
id = "secure"
match = {{ path_prefix = "/" }}
upstream = "secure"
"#
    );
    let gw = TestGateway::start_with_files(&text, &[("ca.pem", &pki.ca_pem)]).await;
    let running = gw.running();
    let labels = |result| {
        [
            ("upstream", "secure"),
            ("endpoint", address.as_str()),
            ("result", result),
        ]
    };
    // Poll (bounded): checks run in the background, with no event to await.
    let mut m = scrape(running).await;
    for _ in 0..100 {
        if metric(&m, "portico_health_checks_total", &labels("bad_status")).unwrap_or(0.0) >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        m = scrape(running).await;
    }
    assert!(metric(&m, "portico_health_checks_total", &labels("bad_status")).unwrap() >= 1.0);
    let e = endpoint_status(running, "secure", &address).await;
    assert_eq!(e["health"], "unhealthy", "{e}");
    assert_eq!(
        metric(&m, "portico_health_checks_total", &labels("error")),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_health_checks_brings_failing_endpoints_back() {
    let a = Switchable::start("a").await;
    let b = Switchable::start("b").await;
    let gw = TestGateway::start(&gateway(&[&a, &b], CHECKS, "")).await;
    let running = gw.running();
    let a_addr = a.addr().to_string();
    a.health.store(500, Ordering::SeqCst);
    wait_endpoint(running, "app", &a_addr, Duration::from_secs(5), |e| {
        e["health"] == "unhealthy"
    })
    .await;
    write(gw.dir.path(), "gateway.toml", &gateway(&[&a, &b], "", ""));
    running.gateway.reload().unwrap();
    let e = endpoint_status(running, "app", &a_addr).await;
    assert_eq!(
        (e["health"].as_str(), e["usable"].as_bool()),
        (Some("unchecked"), Some(true)),
        "{e}"
    );
    let before = a.served();
    sequential(&gw.url("/n"), 20, &[], 200).await;
    assert_eq!(a.served(), before + 10);
}
