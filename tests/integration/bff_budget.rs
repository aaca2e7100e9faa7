//! BFF fan-out under a deadline budget: concurrency, dependencies, partial answers, 502/504,
//! cancellation, and the budget header.

use crate::support;

use std::time::{Duration, Instant};

use support::*;

/// gateway.toml with one upstream per backend (named after it).
fn gateway_toml(backends: &[(&str, &RawBackend)]) -> String {
    backends
        .iter()
        .fold(config(), |g, (name, b)| {
            g.upstream_with(name, &[b.addr], "timeout = \"10s\"")
        })
        .build()
}

/// A gateway with one upstream per backend and the profile `bff/t.toml`.
async fn start(backends: &[(&str, &RawBackend)], profile: ProfileToml) -> TestGateway {
    let profile = profile.build();
    TestGateway::start_with_files(&gateway_toml(backends), &[("bff/t.toml", &profile)]).await
}

async fn timed_get(url: &str, headers: &[(&str, &str)]) -> (Answer, Duration) {
    let t = Instant::now();
    let a = get_with(url, headers).await;
    (a, t.elapsed())
}

#[tokio::test]
async fn two_independent_150ms_parts_finish_in_about_150ms_not_300() {
    let a = RawBackend::start("a", Fault::Delay(Duration::from_millis(150))).await;
    let b = RawBackend::start("b", Fault::Delay(Duration::from_millis(150))).await;
    let bff = profile("/t")
        .keys("deadline = \"2s\"")
        .endpoint("/both")
        .part("a", "a", "/a", "required = true")
        .part("b", "b", "/b", "required = true");
    let gw = start(&[("a", &a), ("b", &b)], bff).await;
    let url = gw.url("/t/both");
    get(&url).await; // warm the connection pools
    let (ans, took) = timed_get(&url, &[]).await;
    assert_eq!(ans.status, 200);
    assert_eq!(ans.json()["a"]["backend"], "a");
    assert_eq!(ans.json()["b"]["backend"], "b");
    assert!(took >= Duration::from_millis(150), "{took:?}");
    assert!(
        took < Duration::from_millis(290),
        "parts ran one after the other: {took:?}"
    );
    let (ra, rb) = (a.requests().pop().unwrap(), b.requests().pop().unwrap());
    let apart = if ra.at > rb.at {
        ra.at - rb.at
    } else {
        rb.at - ra.at
    };
    assert!(
        apart < Duration::from_millis(100),
        "both calls start together: {apart:?}"
    );
}

#[tokio::test]
async fn a_dependent_part_uses_an_earlier_part_field() {
    let first = RawBackend::start("first", Fault::Delay(Duration::from_millis(60))).await;
    let second = RawBackend::start("second", Fault::Delay(Duration::ZERO)).await;
    let bff = profile("/t")
        .endpoint("/chain/{id}")
        .part(
            "uses",
            "second",
            "/items/{first.id}/{path.id}?seg={first.segment}&q={query.q}",
            "fields = [\"path\", \"query\"]",
        )
        .part("first", "first", "/first", "fields = [\"segment\"]");
    let gw = start(&[("first", &first), ("second", &second)], bff).await;
    let ans = get(&gw.url("/t/chain/a%20b?q=x%26y")).await;
    assert_eq!(ans.status, 200, "{:?}", ans.body);
    let v = ans.json();
    assert_eq!(v["first"], serde_json::json!({"segment": "gold"}));
    assert_eq!(v["uses"]["path"], "/items/first/a%20b");
    assert_eq!(v["uses"]["query"], "seg=gold&q=x%26y");
    let (f, s) = (
        first.requests().pop().unwrap(),
        second.requests().pop().unwrap(),
    );
    assert!(
        s.at >= f.at + Duration::from_millis(60),
        "the dependent waited for its input"
    );
}

/// A fast required part and two slow optional ones, one with a default; with `slow_required`
/// the first slow part is required too.
fn slow_parts(slow_required: bool) -> ProfileToml {
    profile("/t")
        .keys("deadline = \"200ms\"")
        .endpoint("/home")
        .part(
            "fast",
            "fast",
            "/fast",
            "required = true\nfields = [\"backend\"]",
        )
        .part(
            "slow",
            "slow",
            "/slow",
            if slow_required { "required = true" } else { "" },
        )
        .part("fallback", "slow", "/slow", "default = { items = [] }")
}

#[tokio::test]
async fn a_slow_optional_part_is_dropped_within_the_budget_and_reported() {
    let fast = RawBackend::start("fast", Fault::Delay(Duration::ZERO)).await;
    let slow = RawBackend::start("slow", Fault::Delay(Duration::from_secs(5))).await;
    let gw = start(&[("fast", &fast), ("slow", &slow)], slow_parts(false)).await;
    let (ans, took) = timed_get(&gw.url("/t/home"), &[]).await;
    assert_eq!(ans.status, 200);
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert!(
        took < Duration::from_millis(700),
        "not cut at the budget: {took:?}"
    );
    assert_eq!(
        ans.header("portico-partial"),
        Some("slow;reason=timeout, fallback;reason=timeout")
    );
    let v = ans.json();
    assert_eq!(v["fast"], serde_json::json!({"backend": "fast"}));
    assert!(v.get("slow").is_none());
    assert_eq!(
        v["fallback"],
        serde_json::json!({"items": []}),
        "default used"
    );
    assert_eq!(
        v["_partial"],
        serde_json::json!({"slow": "timeout", "fallback": "timeout"})
    );
    let timing = ans.header("server-timing").unwrap();
    assert!(
        timing.contains("slow;dur=") && timing.contains("desc=\"timeout\""),
        "{timing}"
    );
    // The calls that ran out of time were cancelled: their connections are closed.
    assert!(
        slow.all_closed(Duration::from_secs(2)).await,
        "slow calls still open"
    );
    assert_eq!(slow.cancelled.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_slow_required_part_gives_504_near_the_budget() {
    let fast = RawBackend::start("fast", Fault::Delay(Duration::ZERO)).await;
    let slow = RawBackend::start("slow", Fault::Delay(Duration::from_secs(5))).await;
    let gw = start(&[("fast", &fast), ("slow", &slow)], slow_parts(true)).await;
    let (ans, took) = timed_get(&gw.url("/t/home"), &[]).await;
    assert_eq!(ans.status, 504);
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert!(took < Duration::from_millis(700), "{took:?}");
    assert_eq!(ans.header("content-type"), Some("application/problem+json"));
    let p = ans.json();
    assert_eq!(p["type"], "https://portico.dev/problems/bff-deadline");
    assert!(p["detail"].as_str().unwrap().contains("`slow`"), "{p}");
    assert!(slow.all_closed(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn a_failing_required_part_gives_502_and_cancels_the_calls_still_running() {
    let broken = RawBackend::start("broken", Fault::ServerError).await;
    let slow = RawBackend::start("slow", Fault::Delay(Duration::from_secs(5))).await;
    let bff = profile("/t")
        .keys("deadline = \"3s\"")
        .endpoint("/home")
        .part("slow", "slow", "/slow", "")
        .part("account", "broken", "/account", "required = true");
    let gw = start(&[("broken", &broken), ("slow", &slow)], bff).await;
    let (ans, took) = timed_get(&gw.url("/t/home"), &[]).await;
    assert_eq!(ans.status, 502);
    assert!(
        took < Duration::from_secs(1),
        "did not fail at once: {took:?}"
    );
    let p = ans.json();
    assert_eq!(p["type"], "https://portico.dev/problems/bff-part-failed");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("`account`") && detail.contains("bad-status"),
        "{detail}"
    );
    assert!(
        !ans.body.windows(9).any(|w| w == b"127.0.0.1"),
        "no internals leak"
    );
    assert_eq!(slow.requests().len(), 1, "the slow call had started");
    assert!(
        slow.all_closed(Duration::from_secs(2)).await,
        "the slow call was not cancelled"
    );
    assert_eq!(slow.cancelled.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Parts `a` -> `b` -> `c` in a chain under a 1 s deadline, and `capped` with its own
/// 300 ms timeout; each answers with the budget it was given.
fn chain() -> ProfileToml {
    const BUDGET: &str = "fields = [\"budget_ms\"]";
    profile("/t")
        .keys("deadline = \"1s\"")
        .endpoint("/chain")
        .part("a", "a", "/a", BUDGET)
        .part("b", "b", "/b/{a.id}", BUDGET)
        .part("c", "c", "/c/{b.id}", BUDGET)
        .part(
            "capped",
            "a",
            "/capped",
            &format!("timeout = \"300ms\"\n{BUDGET}"),
        )
}

#[tokio::test]
async fn the_budget_header_reaches_the_backends_and_shrinks_along_a_chain() {
    let d = Fault::Delay(Duration::from_millis(60));
    let (a, b, c) = (
        RawBackend::start("a", d).await,
        RawBackend::start("b", d).await,
        RawBackend::start("c", d).await,
    );
    let gw = start(&[("a", &a), ("b", &b), ("c", &c)], chain()).await;
    let ans = get(&gw.url("/t/chain")).await;
    assert_eq!(ans.status, 200, "{:?}", ans.body);
    let v = ans.json();
    let budget = |p: &str| {
        v[p]["budget_ms"]
            .as_u64()
            .unwrap_or_else(|| panic!("{p}: {v}"))
    };
    let (ba, bb, bc) = (budget("a"), budget("b"), budget("c"));
    assert!(ba <= 1000 && ba > 850, "a: {ba}");
    assert!(bb + 60 <= ba, "b ({bb}) got a's ({ba}) minus a's time");
    assert!(bc + 60 <= bb, "c ({bc}) got b's ({bb}) minus b's time");
    assert!(
        budget("capped") <= 300,
        "a part's own timeout caps its budget"
    );
    assert_eq!(
        a.requests()[0].header("x-request-id"),
        ans.header("x-request-id")
    );
    assert_eq!(a.requests()[0].header("accept"), Some("application/json"));
}

#[tokio::test]
async fn a_client_may_ask_for_a_shorter_budget_never_a_longer_one() {
    let a = RawBackend::start("a", Fault::Delay(Duration::ZERO)).await;
    let b = RawBackend::start("b", Fault::Delay(Duration::ZERO)).await;
    let c = RawBackend::start("c", Fault::Delay(Duration::from_millis(400))).await;
    let gw = start(&[("a", &a), ("b", &b), ("c", &c)], chain()).await;
    let url = gw.url("/t/chain");

    let (short, took) = timed_get(&url, &[("portico-budget-ms", "150")]).await;
    assert_eq!(short.status, 200);
    let v = short.json();
    assert!(v["a"]["budget_ms"].as_u64().unwrap() <= 150, "{v}");
    assert_eq!(
        v["_partial"]["c"], "timeout",
        "c (400 ms) missed the 150 ms budget"
    );
    assert!(took < Duration::from_millis(390), "{took:?}");

    let long = get_with(&url, &[("portico-budget-ms", "60000")])
        .await
        .json();
    let got = long["a"]["budget_ms"].as_u64().unwrap();
    assert!(
        got <= 1000 && got > 850,
        "capped at the profile's deadline: {got}"
    );

    let bad = get_with(&url, &[("portico-budget-ms", "soon")]).await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json()["type"],
        "https://portico.dev/problems/bad-request"
    );
    let none = get_with(&url, &[("portico-budget-ms", "0")]).await;
    assert_eq!(none.status, 200);
    assert_eq!(
        none.json()["_partial"]["a"],
        "timeout",
        "nothing left to spend"
    );
}

#[tokio::test]
async fn an_answer_of_the_wrong_shape_is_omitted_or_fails_a_required_part() {
    let echo = RawBackend::start("echo", Fault::Delay(Duration::ZERO)).await;
    let bff = profile("/t")
        .endpoint("/optional")
        .part(
            "good",
            "echo",
            "/good",
            "fields = [\"backend\", \"headers.nope\", \"path[].x\"]",
        )
        .part("list", "echo", "/list", "fields = [\"[].id\"]")
        .part(
            "flat",
            "echo",
            "/flat",
            "fields = [\"segment\"]\nflatten = true",
        )
        .endpoint("/required")
        .part(
            "list",
            "echo",
            "/list",
            "fields = [\"[].id\"]\nrequired = true",
        );
    let gw = start(&[("echo", &echo)], bff).await;
    let ans = get(&gw.url("/t/optional")).await;
    assert_eq!(ans.status, 200);
    assert_eq!(
        ans.json(),
        serde_json::json!({"good": {"backend": "echo", "headers": {}}, "segment": "gold",
                           "_partial": {"list": "unexpected-shape"}}),
        "missing and mistyped fields are omitted; a root of the wrong type drops the part"
    );
    assert_eq!(
        ans.header("portico-partial"),
        Some("list;reason=unexpected-shape")
    );
    let req = get(&gw.url("/t/required")).await;
    assert_eq!(req.status, 502);
    assert!(
        req.json()["detail"]
            .as_str()
            .unwrap()
            .contains("unexpected-shape")
    );
}
