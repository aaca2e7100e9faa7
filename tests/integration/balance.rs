//! Endpoint balancing over real backends on 127.0.0.1:0: weights, least_request, consistent
//! hashing across health changes and reloads, slow start, and the config errors `portico
//! check` reports for the balancing keys.

use crate::support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Request;
use support::balance::*;
use support::*;

/// A gateway with one upstream `app` (its table body given) behind the catch-all route.
fn gateway(upstream: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
watch = false

[log]
access_log = false

[upstreams.app]
{upstream}

[[routes]]
id = "app"
match = {{ path_prefix = "/" }}
upstream = "app"
"#
    )
}

fn endpoints(list: &[&Switchable]) -> String {
    let items: Vec<String> = list.iter().map(|b| format!("\"{}\"", b.addr())).collect();
    format!("endpoints = [{}]", items.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_three_to_one_split_interleaved() {
    let a = Switchable::start("a").await;
    let b = Switchable::start("b").await;
    let up = format!(
        r#"endpoints = [{{ address = "{}", weight = 3 }}, "{}"]"#,
        a.addr(),
        b.addr()
    );
    let gw = TestGateway::start(&gateway(&up)).await;
    let seq = sequential(&gw.url("/w"), 4000, &[], 200).await;
    let share = seq.iter().filter(|s| *s == "a").count() as f64 / seq.len() as f64;
    assert!((share - 0.75).abs() <= 0.03, "a's share {share}");
    // Interleaved, not in bursts: every 8 answers in a row include both backends.
    assert!(
        seq.windows(8)
            .all(|w| w.contains(&"a".into()) && w.contains(&"b".into())),
        "{:?}",
        &seq[..24]
    );
    let e = endpoint_status(gw.running(), "app", &a.addr().to_string()).await;
    assert_eq!(e["weight"], 3);
    assert_eq!(e["requests"], a.served() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_starves_a_slow_endpoint() {
    let fast1 = Switchable::start("f1").await;
    let fast2 = Switchable::start("f2").await;
    let slow = Switchable::start("slow").await;
    fast1.delay_ms.store(5, std::sync::atomic::Ordering::SeqCst);
    fast2.delay_ms.store(5, std::sync::atomic::Ordering::SeqCst);
    slow.delay_ms
        .store(100, std::sync::atomic::Ordering::SeqCst);
    let up = format!(
        "{}\nlb = \"least_request\"",
        endpoints(&[&fast1, &slow, &fast2])
    );
    let gw = TestGateway::start(&gateway(&up)).await;
    let url = Arc::new(gw.url("/lr"));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { sequential(&url, 50, &[], 200).await })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let total = fast1.served() + fast2.served() + slow.served();
    assert_eq!(total, 300);
    // Its fair (1/N) share would be 100; it should get well under half of that.
    assert!(
        slow.served() < 50,
        "slow endpoint got {} of 300",
        slow.served()
    );
}

/// Sends one request per key (`x-user: user-K`) and returns which backend answered each.
async fn owners(url: &str, keys: usize) -> Vec<String> {
    let client = h1_client();
    let mut out = Vec::with_capacity(keys);
    for k in 0..keys {
        let req = Request::get(url)
            .header("x-user", format!("user-{k}"))
            .body(Default::default())
            .unwrap();
        let a = send_with(&client, req).await;
        assert_eq!(a.status, 200);
        out.push(a.header("x-backend").unwrap().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_keys_through_health_changes_and_reloads() {
    let bs = [
        Switchable::start("a").await,
        Switchable::start("b").await,
        Switchable::start("c").await,
        Switchable::start("d").await,
    ];
    let policy = r#"lb = "consistent_hash"
hash_key = "header:x-user"
[upstreams.app.health]
path = "/healthz"
interval = "100ms"
timeout = "100ms"
unhealthy_threshold = 2
healthy_threshold = 1"#;
    // Two failed checks in a row, not one, mark an endpoint down: a single check that misses its
    // timeout while other tests load the machine would move keys and fail the counts below.
    let all: Vec<&Switchable> = bs.iter().collect();
    let gw = TestGateway::start(&gateway(&format!("{}\n{policy}", endpoints(&all)))).await;
    let url = gw.url("/ch");
    let first = owners(&url, 1000).await;
    assert_eq!(
        owners(&url, 1000).await,
        first,
        "every key lands where it did"
    );
    let mut spread: HashMap<&str, usize> = HashMap::new();
    for o in &first {
        *spread.entry(o.as_str()).or_default() += 1;
    }
    assert!(spread.values().all(|&n| n > 150), "{spread:?}");

    // c's health check fails: its keys move (only they do), and come back when it recovers.
    let c = &bs[2];
    let c_addr = c.addr().to_string();
    c.health.store(500, std::sync::atomic::Ordering::SeqCst);
    wait_endpoint(gw.running(), "app", &c_addr, Duration::from_secs(5), |e| {
        e["health"] == "unhealthy"
    })
    .await;
    let during = owners(&url, 1000).await;
    for (k, (before, now)) in first.iter().zip(&during).enumerate() {
        if before == "c" {
            assert_ne!(now, "c", "key {k} stayed on the unhealthy endpoint");
        } else {
            assert_eq!(before, now, "key {k} moved though its endpoint is healthy");
        }
    }
    c.health.store(200, std::sync::atomic::Ordering::SeqCst);
    wait_endpoint(gw.running(), "app", &c_addr, Duration::from_secs(5), |e| {
        e["health"] == "healthy"
    })
    .await;
    assert_eq!(owners(&url, 1000).await, first, "keys came back");

    // A reload drops d: about a quarter of the keys move, not most of them.
    let three: Vec<&Switchable> = bs[..3].iter().collect();
    write(
        gw.dir.path(),
        "gateway.toml",
        &gateway(&format!("{}\n{policy}", endpoints(&three))),
    );
    gw.running().gateway.reload().unwrap();
    let after = owners(&url, 1000).await;
    let moved = first.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(moved <= 300, "{moved} of 1000 keys moved");
    assert!(after.iter().all(|o| o != "d"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_ramps_a_joining_endpoint() {
    let a = Switchable::start("a").await;
    let b = Switchable::start("b").await;
    let c = Switchable::start("c").await;
    let gw = TestGateway::start(&gateway(&format!(
        "{}\nslow_start = \"60s\"",
        endpoints(&[&a, &b])
    )))
    .await;
    write(
        gw.dir.path(),
        "gateway.toml",
        &gateway(&format!(
            "{}\nslow_start = \"60s\"",
            endpoints(&[&a, &b, &c])
        )),
    );
    let t0 = Instant::now();
    gw.running().gateway.reload().unwrap();
    let seq = sequential(&gw.url("/ss"), 900, &[], 200).await;
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "the requests must fit in the first tenth of the window"
    );
    let got = seq.iter().filter(|s| *s == "c").count();
    // Its full share would be 300 of 900.
    assert!(
        got < 60,
        "c got {got} of 900 in the first tenth of its ramp"
    );
    assert!(got > 0, "a ramping endpoint still gets some traffic");
    let e = endpoint_status(gw.running(), "app", &c.addr().to_string()).await;
    let eff = e["effective_weight"].as_f64().unwrap();
    assert!((0.1..0.2).contains(&eff), "{e}");
    // The endpoints that stayed are not ramping.
    let ea = endpoint_status(gw.running(), "app", &a.addr().to_string()).await;
    assert_eq!(ea["effective_weight"].as_f64(), Some(1.0));
}

fn check_text(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "gateway.toml", text);
    let path = dir.path().join("gateway.toml");
    let (code, out, err) = portico_cli(&["check", "--config", path.to_str().unwrap()]);
    (code, format!("{out}{err}"))
}

#[test]
fn check_rejects_bad_balancing_keys() {
    let bad = gateway(
        r#"endpoints = ["127.0.0.1:9", { address = "127.0.0.1:10", weight = 0 }, { address = "127.0.0.1:11", weight = -2 }]
hash_key = "header:x-user"
[upstreams.app.health]
path = "/healthz"
interval = "1s"
timeout = "2s"
unhealthy_threshold = 0
[upstreams.app.outlier]
consecutive_failures = 0
[upstreams.b]
endpoints = ["127.0.0.1:12"]
lb = "consistent_hash"
[upstreams.c]
endpoints = ["127.0.0.1:13", "127.0.0.1:13"]
lb = "fastest"
"#,
    );
    let (code, out) = check_text(&bad);
    assert_eq!(code, 1, "{out}");
    for want in [
        "gateway.toml:11:29: upstreams.app.endpoints[1].weight: must be between 1 and 1000, got 0",
        "upstreams.app.endpoints[2].weight: must be between 1 and 1000, got -2",
        "gateway.toml:12:12: upstreams.app.hash_key: hash_key needs lb = \"consistent_hash\"",
        "upstreams.app.health.interval: interval (1s) must not be shorter than timeout (2s)",
        "upstreams.app.health.unhealthy_threshold: must be between 1 and 1000, got 0",
        "upstreams.app.outlier.consecutive_failures: must be between 1 and 100000, got 0",
        "upstreams.b.lb: consistent_hash needs a hash_key",
        "upstreams.c.endpoints[1]: endpoint \"127.0.0.1:13\" is listed twice",
        "upstreams.c.lb: unknown lb \"fastest\"",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let good = gateway(
        r#"endpoints = ["127.0.0.1:9", { address = "127.0.0.1:10", weight = 3 }]
lb = "consistent_hash"
hash_key = "cookie:sid"
slow_start = "30s"
[upstreams.app.health]
path = "/healthz"
expected_statuses = [200, "204", "300-399"]
[upstreams.app.outlier]
consecutive_gateway_errors = 3
"#,
    );
    let (code, out) = check_text(&good);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bff_part_calls_use_the_upstream_policy() {
    let bs = [
        Switchable::start("a").await,
        Switchable::start("b").await,
        Switchable::start("c").await,
    ];
    let all: Vec<&Switchable> = bs.iter().collect();
    let text = gateway(&format!(
        "{}\nlb = \"consistent_hash\"\nhash_key = \"header:x-user\"",
        endpoints(&all)
    ));
    let profile = r#"
mount = "/f"
deadline = "2s"

[[endpoints]]
path = "/who"
  [[endpoints.parts]]
  name = "p"
  upstream = "app"
  path = "/p"
  required = true
  fields = ["backend"]
"#;
    let gw = TestGateway::start_with_files(&text, &[("bff/f.toml", profile)]).await;
    let mut seen = std::collections::HashSet::new();
    for user in 0..60 {
        let id = format!("u{user}");
        let who = |a: Answer| a.json()["p"]["backend"].as_str().unwrap().to_string();
        let first = who(get_with(&gw.url("/f/who"), &[("x-user", &id)]).await);
        for _ in 0..3 {
            let again = who(get_with(&gw.url("/f/who"), &[("x-user", &id)]).await);
            assert_eq!(again, first, "user {id} moved");
        }
        seen.insert(first);
    }
    assert_eq!(seen.len(), 3, "keys spread over every endpoint: {seen:?}");
}
