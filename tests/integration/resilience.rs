//! Failure policy end to end: retries on another endpoint, idempotency, per-try timeouts, the
//! retry budget under a storm, the circuit's bulkhead, and `portico check` rejections.

use crate::support;

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

/// Upstream `app` = [503, echo] with a gateway-error retry policy; routes that turn it off,
/// retry POSTs under it, and override it with a small replay buffer.
fn override_gateway(bad: &RawBackend, good: &Backend) -> String {
    let policy =
        "retry = { attempts = 1, retry_on = [\"gateway-error\"], replay_buffer = \"1KiB\" }";
    support::config()
        .upstream_with(
            "app",
            &[bad.addr.to_string(), good.addr.to_string()],
            "timeout = \"2s\"\n[upstreams.app.retry]\nattempts = 1\nretry_on = [\"gateway-error\"]",
        )
        .route_with("off", "/off", "app", "retry = { attempts = 0 }")
        .route_with("small", "/small", "app", "retry_non_idempotent = true")
        .route_with(
            "big",
            "/big",
            "app",
            &format!("{policy}\nretry_non_idempotent = true"),
        )
        .build()
}

async fn post(url: &str, body: &[u8]) -> Answer {
    let req = Request::post(url)
        .body(Full::new(Bytes::from(body.to_vec())))
        .unwrap();
    send(req).await
}

#[tokio::test(flavor = "multi_thread")]
async fn route_retry_override_and_post_bodies_replayed_within_the_buffer() {
    let bad = RawBackend::start("bad", Fault::ServerError).await;
    let good = Backend::echo("good").await;
    let gw = ChildGateway::start(&override_gateway(&bad, &good), &[]);
    // `retry = { attempts = 0 }` turns the upstream's policy off for this route.
    let mut off_failed = 0;
    for _ in 0..4 {
        let a = get(&gw.url("/off")).await;
        if a.status == 503 {
            off_failed += 1;
        }
    }
    assert!(off_failed >= 1, "with retries off some GETs get the 503");
    assert_eq!(bad.requests().len(), off_failed);
    // A small POST body is kept as it streams and sent again to the other endpoint.
    let small = payload(600);
    let before = bad.requests().len();
    for _ in 0..4 {
        let a = post(&gw.url("/small"), &small).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        assert_eq!(a.json()["body_sum"], checksum(&small));
    }
    let retried: Vec<_> = bad.requests()[before..].to_vec();
    assert!(!retried.is_empty(), "some POSTs reached the 503 first");
    assert!(
        retried
            .iter()
            .all(|r| r.method == "POST" && r.body == small)
    );
    gw.log_line(
        |l| l.contains("access:") && l.contains("/small") && l.contains("attempts=2"),
        Duration::from_secs(10),
    );
    // A body past the route's 1 KiB replay buffer is not retried.
    let big = payload(3000);
    let (before_bad, before_good) = (bad.requests().len(), good.hits());
    let mut big_failed = 0;
    for _ in 0..4 {
        match post(&gw.url("/big"), &big).await.status.as_u16() {
            503 => big_failed += 1,
            s => assert_eq!(s, 200),
        }
    }
    assert!(big_failed >= 1, "some big POSTs reached the 503 first");
    assert_eq!(bad.requests().len() - before_bad, big_failed);
    assert_eq!(good.hits() - before_good, 4 - big_failed, "none sent twice");
}

#[test]
fn check_rejects_route_retry_and_hedge_mistakes() {
    let text = support::config()
        .upstream("app", &["127.0.0.1:9"])
        .route_with(
            "app",
            "/",
            "app",
            "timeout = \"1s\"\nretry = { attempts = 1, per_try_timeout = \"1s\" }",
        )
        .build();
    let bff = profile("/f")
        .keys("deadline = \"1s\"")
        .endpoint("/home")
        .part("a", "app", "/a", "hedge_after = \"1s\"")
        .part(
            "b",
            "app",
            "/b",
            "method = \"POST\"\nhedge_after = \"50ms\"",
        )
        .build();
    assert_check_reports(
        &text,
        &[("bff/f.toml", &bff)],
        &[
            "routes[0].retry.per_try_timeout: per_try_timeout (1s) must be shorter than the timeout (1s)",
            "hedge_after: hedge_after (1s) must be shorter than the deadline (1s)",
            "hedge_after: a POST part cannot be hedged",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hedged_part_answers_after_hedge_after_plus_the_fast_latency() {
    let hang = RawBackend::start("hang", Fault::Hang).await;
    let fast = RawBackend::start("fast", Fault::Delay(Duration::from_millis(20))).await;
    let gateway = support::config()
        .no_access_log()
        .upstream_with(
            "cat",
            &[hang.addr.to_string(), fast.addr.to_string()],
            "timeout = \"5s\"",
        )
        .build();
    let bff = profile("/f")
        .keys("deadline = \"3s\"")
        .endpoint("/home")
        .part(
            "items",
            "cat",
            "/i",
            "required = true\nhedge_after = \"150ms\"",
        )
        .build();
    let gw = TestGateway::start_with_files(&gateway, &[("bff/f.toml", &bff)]).await;
    let mut hedged = 0;
    for _ in 0..6 {
        let started = Instant::now();
        let a = get(&gw.url("/f/home")).await;
        let took = started.elapsed();
        assert_eq!(a.status, 200, "{:?}", a.body);
        if took >= Duration::from_millis(150) {
            hedged += 1;
            // hedge_after + the fast endpoint's 20 ms, with room for a busy machine; without
            // the hedge the part would wait for the 3 s deadline.
            assert!(
                took < Duration::from_millis(700),
                "hedged answer took {took:?}"
            );
        }
    }
    assert!(
        hedged >= 1,
        "round robin sent some first tries to the hanging endpoint"
    );
    assert_eq!(
        hang.requests().len(),
        hedged,
        "each hedge followed a hanging first try"
    );
    assert!(
        hang.all_closed(Duration::from_secs(2)).await,
        "the losing try is cancelled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bff_part_starts_no_retry_that_its_budget_cannot_fit() {
    let a = RawBackend::start("a", Fault::ServerError).await;
    let b = RawBackend::start("b", Fault::ServerError).await;
    let gateway = support::config()
        .no_access_log()
        .upstream_with(
            "svc",
            &[a.addr.to_string(), b.addr.to_string()],
            "timeout = \"2s\"\n[upstreams.svc.retry]\nattempts = 1\nretry_on = [\"gateway-error\"]\nper_try_timeout = \"300ms\"\nbackoff = { base = \"1ms\", max = \"2ms\" }",
        )
        .build();
    let bff = profile("/f")
        .endpoint("/short")
        .keys("deadline = \"200ms\"")
        .part("x", "svc", "/x", "")
        .endpoint("/long")
        .keys("deadline = \"2s\"")
        .part("x", "svc", "/x", "")
        .build();
    let gw = TestGateway::start_with_files(&gateway, &[("bff/f.toml", &bff)]).await;
    let seen = || a.requests().len() + b.requests().len();
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/f/short")).await.status, 200);
    }
    assert_eq!(seen(), 3, "200 ms left cannot fit a 300 ms try: no retry");
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/f/long")).await.status, 200);
    }
    assert_eq!(
        seen(),
        3 + 6,
        "with 2 s left each part call is retried once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn adaptive_limit_falls_when_latency_rises_tenfold_and_rises_on_recovery() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let latency: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(25)));
    let slow = RawBackend::start("slow", Fault::DelayFrom(latency)).await;
    let text = support::config()
        .admin()
        .no_access_log()
        .upstream_with(
            "app",
            &[slow.addr],
            "timeout = \"5s\"\n[upstreams.app.circuit]\nmax_requests = 40\nadaptive = true\nmin_limit = 2",
        )
        .route("app", "/", "app")
        .build();
    let gw = TestGateway::start(&text).await;
    let limit = || async {
        let s = scrape(gw.running()).await;
        metric(
            &s,
            "portico_upstream_concurrency_limit",
            &[("upstream", "app")],
        )
        .unwrap()
    };
    let shots = |n: usize| (0..n).map(|_| Shot::get(&gw.url("/x"))).collect::<Vec<_>>();
    // Normal latency sets the baseline; nothing is shed.
    let normal = fire(shots(100), 10).await;
    assert!(normal.iter().all(|o| o.status == 200));
    assert_eq!(limit().await, 40.0);
    // Ten times slower: the limit falls and the excess is refused at once (bounded: the
    // 30 clients run at most 3 rounds).
    latency.store(250, Ordering::SeqCst);
    let mut shed = Vec::new();
    let mut low = 40.0;
    for _ in 0..3 {
        let slowed = fire(shots(90), 30).await;
        shed.extend(slowed.into_iter().filter(|o| o.status == 503));
        low = limit().await;
        if low < 30.0 && !shed.is_empty() {
            break;
        }
    }
    eprintln!("adaptive: limit 40 -> {low}, {} shed", shed.len());
    assert!(low < 30.0, "the limit fell to {low}");
    assert!(!shed.is_empty(), "requests past the lower limit are shed");
    assert!(
        shed.iter().all(|o| o.took < Duration::from_millis(150)),
        "shed at once, not after the 250 ms latency"
    );
    // Recovered: the limit rises again (bounded: 20 rounds of 60 requests).
    latency.store(25, Ordering::SeqCst);
    let mut now = low;
    for _ in 0..20 {
        fire(shots(60), 30).await;
        now = limit().await;
        if now >= low + 8.0 {
            break;
        }
    }
    eprintln!("adaptive: recovered to {now}");
    assert!(now >= low + 8.0, "the limit rose from {low} to {now}");
}
