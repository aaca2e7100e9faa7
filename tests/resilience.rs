//! Failure policy end to end: retries on another endpoint, idempotency, per-try timeouts, the
//! retry budget under a storm, the circuit's bulkhead, and `portico check` rejections.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::traffic::{Shot, fire};
use support::*;

fn retry_gateway(endpoints: &[String], retry: &str) -> String {
    support::config()
        .no_access_log()
        .upstream_with("app", endpoints, &format!("timeout = \"2s\"\n{retry}"))
        .route("app", "/", "app")
        .build()
}

#[tokio::test(flavor = "multi_thread")]
async fn get_failing_on_one_endpoint_succeeds_on_the_other_and_logs_two_attempts() {
    let bad = RawBackend::start("bad", Fault::ServerError).await;
    let good = Backend::echo("good").await;
    let text = support::config()
        .upstream_with(
            "app",
            &[bad.addr.to_string(), good.addr.to_string()],
            "[upstreams.app.retry]\nattempts = 2\nretry_on = [\"gateway-error\"]\nexpose_attempts = true",
        )
        .route("app", "/", "app")
        .build();
    let gw = ChildGateway::start(&text, &[]);
    let mut twice = 0;
    for _ in 0..4 {
        let a = get(&gw.url("/x")).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        if a.header("portico-attempts") == Some("2") {
            twice += 1;
            gw.log_line(
                |l| l.contains("access:") && l.contains("attempts=2"),
                Duration::from_secs(10),
            );
        }
    }
    assert!(
        twice >= 1,
        "round robin sends some first tries to the failing endpoint"
    );
    assert_eq!(bad.requests().len(), twice);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_that_reached_the_upstream_is_not_retried() {
    let bad = RawBackend::start("bad", Fault::ServerError).await;
    let good = Backend::echo("good").await;
    let gw = TestGateway::start(&retry_gateway(
        &[bad.addr.to_string(), good.addr.to_string()],
        "[upstreams.app.retry]\nattempts = 2\nretry_on = [\"5xx\"]",
    ))
    .await;
    let mut failed = 0;
    for _ in 0..4 {
        let req = Request::post(gw.url("/orders"))
            .body(Full::new(Bytes::from_static(b"{\"n\":1}")))
            .unwrap();
        let a = send(req).await;
        if a.status == 503 {
            failed += 1;
        } else {
            assert_eq!(a.status, 200);
        }
    }
    assert!(failed >= 1, "some POSTs went to the failing endpoint first");
    assert_eq!(bad.requests().len(), failed);
    assert_eq!(good.hits() + failed, 4, "no POST was sent twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_refused_at_connect_is_retried_with_its_body() {
    let dead = dead_addr().await;
    let good = Backend::echo("good").await;
    let gw = TestGateway::start(&retry_gateway(
        &[dead.to_string(), good.addr.to_string()],
        "[upstreams.app.retry]\nattempts = 2\nretry_on = [\"connect-failure\"]",
    ))
    .await;
    let body = payload(3000);
    for _ in 0..3 {
        let req = Request::post(gw.url("/orders"))
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let a = send(req).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        assert_eq!(a.json()["body_sum"], checksum(&body));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn per_try_timeout_escapes_a_hanging_endpoint() {
    let hang = RawBackend::start("hang", Fault::Hang).await;
    let good = Backend::echo("good").await;
    let gw = TestGateway::start(&retry_gateway(
        &[hang.addr.to_string(), good.addr.to_string()],
        "[upstreams.app.retry]\nattempts = 1\nretry_on = [\"timeout\"]\nper_try_timeout = \"100ms\"",
    ))
    .await;
    for _ in 0..4 {
        let started = Instant::now();
        let a = get(&gw.url("/x")).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(
        !hang.requests().is_empty(),
        "the hanging endpoint was tried"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_storm_stays_within_the_budget() {
    let a = RawBackend::start("a", Fault::ServerError).await;
    let b = RawBackend::start("b", Fault::ServerError).await;
    let gw = TestGateway::start(&retry_gateway(
        &[a.addr.to_string(), b.addr.to_string()],
        "[upstreams.app.retry]\nattempts = 2\nretry_on = [\"gateway-error\"]\nbackoff = { base = \"1ms\", max = \"2ms\" }\nbudget = { ratio = 0.2, min_per_second = 2 }",
    ))
    .await;
    let n = 300;
    let started = Instant::now();
    let shots = (0..n).map(|_| Shot::get(&gw.url("/x"))).collect();
    let outcomes = fire(shots, 20).await;
    let secs = started.elapsed().as_secs() + 1;
    assert!(
        outcomes.iter().all(|o| o.status == 503),
        "clients get the original error"
    );
    let seen = a.requests().len() + b.requests().len();
    let retries = seen - n;
    // Ratio of the first tries, plus the steady 2 a second over every wall-clock second the
    // run touched (a run under a second can straddle two).
    let bound = n / 5 + 2 * (secs as usize + 1);
    eprintln!("retry storm: {n} requests, {retries} retries in {secs}s (bound {bound})");
    assert!(retries > 0, "the budget allows some retries");
    assert!(retries <= bound, "{retries} retries > {bound}");
}

#[tokio::test(flavor = "multi_thread")]
async fn circuit_refuses_past_max_requests_at_once_and_spares_other_upstreams() {
    let slow = RawBackend::start("slow", Fault::Delay(Duration::from_millis(600))).await;
    let other = Backend::echo("other").await;
    let text = support::config()
        .no_access_log()
        .upstream_with(
            "slow",
            &[slow.addr],
            "timeout = \"5s\"\n[upstreams.slow.circuit]\nmax_requests = 10",
        )
        .upstream("other", &[other.addr])
        .route("other", "/other", "other")
        .route("slow", "/", "slow")
        .build();
    let gw = TestGateway::start(&text).await;
    let url = gw.url("/x");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let a = get(&url).await;
            (a, started.elapsed())
        }));
    }
    // Meanwhile the other upstream answers.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let o = get(&gw.url("/other")).await;
    assert_eq!(o.status, 200);
    let mut ok = 0;
    let mut shed = 0;
    for t in tasks {
        let (a, took) = t.await.unwrap();
        match a.status.as_u16() {
            200 => ok += 1,
            503 => {
                shed += 1;
                assert_eq!(a.header("portico-overloaded"), Some("upstream"));
                assert!(a.json()["type"].as_str().unwrap().ends_with("/overloaded"));
                assert!(took < Duration::from_millis(300), "shed at once: {took:?}");
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!((ok, shed), (10, 10));
}

#[test]
fn check_rejects_bad_failure_policies() {
    let text = support::config()
        .upstream_with(
            "app",
            &["127.0.0.1:9"],
            "timeout = \"1s\"\n[upstreams.app.retry]\nattempts = 11\nretry_on = [\"gateway-eror\"]\nper_try_timeout = \"1s\"\nbackoff = { base = \"300ms\", max = \"250ms\" }\nbudget = { ratio = 1.5 }",
        )
        .route("app", "/", "app")
        .build();
    assert_check_reports(
        &text,
        &[],
        &[
            "upstreams.app.retry.attempts: must be between 0 and 10, got 11",
            "upstreams.app.retry.retry_on[0]: unknown retry_on \"gateway-eror\"; did you mean `gateway-error`?",
            "upstreams.app.retry.per_try_timeout: per_try_timeout (1s) must be shorter than the timeout (1s)",
            "upstreams.app.retry.backoff.base: backoff.base (300ms) must not be longer than backoff.max (250ms)",
            "upstreams.app.retry.budget.ratio: must be in (0, 1], got 1.5",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bff_fallback_is_served_and_reported_as_fallback() {
    let good = RawBackend::start("good", Fault::Delay(Duration::ZERO)).await;
    let bad = RawBackend::start("bad", Fault::ServerError).await;
    let gateway = support::config()
        .no_access_log()
        .upstream("good", &[good.addr])
        .upstream("bad", &[bad.addr])
        .build();
    let bff = profile("/f")
        .keys("deadline = \"1s\"")
        .endpoint("/home")
        .part("user", "good", "/u", "required = true")
        .part("orders", "bad", "/o", "fallback = { items = [] }")
        .build();
    let gw = TestGateway::start_with_files(&gateway, &[("bff/f.toml", &bff)]).await;
    let a = get(&gw.url("/f/home")).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let v = a.json();
    assert_eq!(v["orders"], serde_json::json!({ "items": [] }));
    assert_eq!(v["_partial"]["orders"], "fallback");
    assert_eq!(
        a.header("portico-partial"),
        Some("orders;reason=fallback;cause=bad-status;status=503")
    );
}

#[test]
fn check_rejects_a_fallback_on_a_required_part() {
    let gateway = support::config().upstream("u", &["127.0.0.1:9"]).build();
    let bff = profile("/f")
        .endpoint("/home")
        .part("user", "u", "/u", "required = true\nfallback = { id = 0 }")
        .build();
    assert_check_reports(
        &gateway,
        &[("bff/f.toml", &bff)],
        &["fallback: a required part cannot have a fallback"],
    );
}
