//! Mirroring: the share of copies, the `-shadow` Host and the same body, a hanging shadow that
//! costs the client nothing, the concurrency cap, and bodies too large to copy.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use support::traffic::*;
use support::*;

fn mirror_config(primary: &Backend, shadow: &Recorder, mirror: &str) -> String {
    traffic_config(
        &[("primary", primary.addr), ("shadow", shadow.backend.addr)],
        &format!(
            r#"
[[routes]]
id = "on"
match = {{ path_prefix = "/on" }}
upstream = "primary"
mirror = {mirror}

[[routes]]
id = "off"
match = {{ path_prefix = "/off" }}
upstream = "primary"
"#
        ),
    )
}

async fn mirror_count(gw: &TestGateway, outcome: &str) -> usize {
    let m = scrape(gw.running()).await;
    metric(
        &m,
        "portico_mirror_requests_total",
        &[("route", "on"), ("outcome", outcome)],
    )
    .unwrap_or(-1.0) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_of_requests_reach_the_shadow_with_its_host_and_the_same_body() {
    let primary = Backend::echo("primary").await;
    let shadow = Recorder::start("shadow", Duration::ZERO).await;
    let gw = TestGateway::start(&mirror_config(
        &primary,
        &shadow,
        r#"{ upstream = "shadow", percent = 10 }"#,
    ))
    .await;
    let shots: Vec<Shot> = (0..2000)
        .map(|i| Shot {
            url: gw.url(&format!("/on/orders?i={i}")),
            headers: vec![],
            body: Bytes::from(format!(
                "{{\"order\": {i}, \"pad\": \"{}\"}}",
                "x".repeat(i % 300)
            )),
        })
        .collect();
    let outcomes = fire(shots.clone(), 8).await;
    assert!(
        outcomes
            .iter()
            .all(|o| o.status == 200 && o.backend == "primary")
    );
    assert_eq!(primary.hits(), 2000);

    let sent = mirror_count(&gw, "sent").await;
    assert!((140..=260).contains(&sent), "{sent} copies of 2000 at 10%");
    assert!(
        shadow.wait_for(sent, Duration::from_secs(10)).await,
        "copies did not arrive"
    );
    let seen = shadow.seen();
    assert_eq!(seen.len(), sent);
    let want_host = format!("127.0.0.1-shadow:{}", shadow.backend.addr.port());
    for r in &seen {
        assert_eq!(r.host, want_host);
        let i: usize = r.target.split("i=").nth(1).unwrap().parse().unwrap();
        assert_eq!(r.target, format!("/on/orders?i={i}"));
        assert_eq!(
            r.body_sum,
            checksum(&shots[i].body),
            "copy {i} has the same body"
        );
        assert_eq!(r.body_len, shots[i].body.len());
    }
    assert_eq!(mirror_count(&gw, "error").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_shadow_adds_nothing_to_the_clients_latency() {
    let primary = Backend::echo("primary").await;
    let shadow = Recorder::start("shadow", Duration::from_secs(2)).await;
    let gw = TestGateway::start(&mirror_config(
        &primary,
        &shadow,
        r#"{ upstream = "shadow", timeout = "5s", max_concurrent = 32 }"#,
    ))
    .await;
    // Interleave mirrored and plain requests in one run so both see the same machine.
    let mut shots = Vec::new();
    for i in 0..600 {
        let path = if i % 2 == 0 { "/on/x" } else { "/off/x" };
        shots.push(Shot::get(&gw.url(path)));
    }
    let outcomes = fire(shots, 2).await;
    assert!(
        outcomes
            .iter()
            .all(|o| o.status == 200 && o.backend == "primary")
    );
    let times = |parity: usize| {
        outcomes
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == parity)
            .map(|(_, o)| o.took)
            .collect::<Vec<_>>()
    };
    let (on, off) = (quantile(times(0), 0.99), quantile(times(1), 0.99));
    assert!(
        on <= off * 2 + Duration::from_millis(10),
        "p99 with mirror {on:?} vs without {off:?}"
    );
    assert!(
        on < Duration::from_millis(500),
        "the 2 s shadow never shows: p99 {on:?}"
    );
    // 300 mirrored requests against 32 slots held 2 s each: most copies were dropped, never queued.
    let (sent, dropped) = (
        mirror_count(&gw, "sent").await,
        mirror_count(&gw, "dropped_capacity").await,
    );
    assert_eq!(sent + dropped, 300);
    assert!(sent >= 32 && dropped > 0, "sent {sent}, dropped {dropped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_errors_and_timeouts_never_reach_the_client() {
    let primary = Backend::echo("primary").await;
    let hang = RawBackend::start("hang", Fault::Hang).await;
    let dead = dead_addr().await;
    let routes = r#"
[[routes]]
id = "hang"
match = { path_prefix = "/hang" }
upstream = "primary"
mirror = { upstream = "hang", timeout = "100ms" }

[[routes]]
id = "dead"
match = { path_prefix = "/dead" }
upstream = "primary"
mirror = { upstream = "dead" }
"#;
    let gw = TestGateway::start(&traffic_config(
        &[
            ("primary", primary.addr),
            ("hang", hang.addr),
            ("dead", dead),
        ],
        routes,
    ))
    .await;
    for path in ["/hang/a", "/dead/a", "/hang/b", "/dead/b"] {
        let a = get(&gw.url(path)).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-backend"), Some("primary"));
    }
    // The copies fail in the background; wait (bounded) until both are counted.
    let errors = |m: &prometheus_parse::Scrape, route: &str| {
        metric(
            m,
            "portico_mirror_requests_total",
            &[("route", route), ("outcome", "error")],
        )
        .unwrap_or(0.0)
    };
    let mut counted = false;
    for _ in 0..100 {
        let m = scrape(gw.running()).await;
        if errors(&m, "hang") == 2.0 && errors(&m, "dead") == 2.0 {
            counted = true;
            break;
        }
        // Polling a counter: there is no signal to await for a background failure.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(counted, "shadow errors were not counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_max_body_are_not_mirrored() {
    let primary = Backend::echo("primary").await;
    let shadow = Recorder::start("shadow", Duration::ZERO).await;
    let gw = TestGateway::start(&mirror_config(
        &primary,
        &shadow,
        r#"{ upstream = "shadow", max_body = "1KiB" }"#,
    ))
    .await;
    let big = Shot {
        url: gw.url("/on/big"),
        headers: vec![],
        body: Bytes::from(payload(4096)),
    };
    let small = Shot {
        url: gw.url("/on/small"),
        headers: vec![],
        body: Bytes::from(payload(1024)),
    };
    let outcomes = fire(vec![big, small], 1).await;
    assert!(outcomes.iter().all(|o| o.status == 200));
    assert!(shadow.wait_for(1, Duration::from_secs(10)).await);
    assert_eq!(mirror_count(&gw, "dropped_body").await, 1);
    assert_eq!(mirror_count(&gw, "sent").await, 1);
    let seen = shadow.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/on/small");
    assert_eq!(seen[0].body_len, 1024);
}
