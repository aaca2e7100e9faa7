//! W3C Trace Context through the gateway: a valid `traceparent` is continued with a new span
//! id, a missing or invalid one is replaced by a fresh trace, `tracestate` passes unchanged, and
//! without `[tracing]` the gateway leaves both headers alone.

use crate::support;

use http::StatusCode;
use support::*;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn config(app: std::net::SocketAddr, tracing: &str) -> String {
    support::config()
        .upstream("app", &[app])
        .route("app", "/app", "app")
        .toml(tracing)
        .build()
}

/// The `traceparent` the backend received, split into (version, trace id, span id, flags).
fn received(answer: &Answer, name: &str) -> Option<String> {
    let v = answer.json();
    v["headers"][name][0].as_str().map(str::to_owned)
}

fn split(tp: &str) -> (String, String, String, String) {
    let p: Vec<&str> = tp.split('-').collect();
    assert_eq!(p.len(), 4, "traceparent {tp}");
    (p[0].into(), p[1].into(), p[2].into(), p[3].into())
}

fn assert_valid(tp: &str) {
    let (version, trace, span, flags) = split(tp);
    assert_eq!(version, "00");
    assert_eq!(trace.len(), 32);
    assert_eq!(span.len(), 16);
    assert_eq!(flags.len(), 2);
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert!(hex(&trace) && hex(&span) && hex(&flags), "{tp}");
    assert_ne!(trace, "0".repeat(32));
    assert_ne!(span, "0".repeat(16));
}

#[tokio::test]
async fn a_valid_traceparent_is_continued_with_a_new_span_id() {
    let app = Backend::echo("app").await;
    let gw = TestGateway::start(&config(app.addr, "[tracing]\nsample_ratio = 0.0")).await;
    let a = get_with(&gw.url("/app/x"), &[("traceparent", PARENT)]).await;
    assert_eq!(a.status, StatusCode::OK);
    let tp = received(&a, "traceparent").expect("backend got a traceparent");
    assert_valid(&tp);
    let (_, trace, span, flags) = split(&tp);
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(span, "00f067aa0ba902b7", "the gateway's own span id");
    // Parent-based: the caller sampled, so the trace stays sampled whatever the ratio.
    assert_eq!(flags, "01");

    // Each request gets its own span id.
    let b = get_with(&gw.url("/app/x"), &[("traceparent", PARENT)]).await;
    let (_, _, span_b, _) = split(&received(&b, "traceparent").unwrap());
    assert_ne!(span, span_b);

    // An unsampled caller stays unsampled even at ratio 1.0.
    let gw1 = TestGateway::start(&config(app.addr, "[tracing]\nsample_ratio = 1.0")).await;
    let unsampled = PARENT.replace("-01", "-00");
    let c = get_with(&gw1.url("/app/x"), &[("traceparent", &unsampled)]).await;
    let (_, trace_c, _, flags_c) = split(&received(&c, "traceparent").unwrap());
    assert_eq!(trace_c, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(flags_c, "00");
}

#[tokio::test]
async fn a_missing_traceparent_starts_a_new_trace() {
    let app = Backend::echo("app").await;
    let gw = TestGateway::start(&config(app.addr, "[tracing]\nsample_ratio = 1.0")).await;
    let a = get(&gw.url("/app/x")).await;
    let b = get(&gw.url("/app/x")).await;
    let (ta, tb) = (
        received(&a, "traceparent").expect("a traceparent is added"),
        received(&b, "traceparent").unwrap(),
    );
    assert_valid(&ta);
    assert_valid(&tb);
    assert_ne!(split(&ta).1, split(&tb).1, "each request is its own trace");
    assert_eq!(split(&ta).3, "01", "ratio 1.0 samples every new trace");

    // Ratio 0.0: still a fresh valid context, not sampled.
    let gw0 = TestGateway::start(&config(app.addr, "[tracing]\nsample_ratio = 0.0")).await;
    let c = received(&get(&gw0.url("/app/x")).await, "traceparent").unwrap();
    assert_valid(&c);
    assert_eq!(split(&c).3, "00");
}

#[tokio::test]
async fn an_invalid_traceparent_is_replaced() {
    let app = Backend::echo("app").await;
    let gw = TestGateway::start(&config(app.addr, "[tracing]")).await;
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "garbage",
    ] {
        let a = get_with(&gw.url("/app/x"), &[("traceparent", bad)]).await;
        assert_eq!(a.status, StatusCode::OK, "{bad}");
        let tp = received(&a, "traceparent").unwrap();
        assert_valid(&tp);
        assert_ne!(tp, bad);
        assert_ne!(
            split(&tp).1,
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "{bad}: a new trace"
        );
    }
}

#[tokio::test]
async fn tracestate_passes_unchanged_and_is_bounded() {
    let app = Backend::echo("app").await;
    let gw = TestGateway::start(&config(app.addr, "[tracing]")).await;
    let state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    let a = get_with(
        &gw.url("/app/x"),
        &[("traceparent", PARENT), ("tracestate", state)],
    )
    .await;
    assert_eq!(received(&a, "tracestate").as_deref(), Some(state));

    let long = format!("k={}", "v".repeat(600));
    let b = get_with(
        &gw.url("/app/x"),
        &[("traceparent", PARENT), ("tracestate", &long)],
    )
    .await;
    assert_eq!(
        received(&b, "tracestate"),
        None,
        "over 512 bytes is dropped"
    );
}

#[tokio::test]
async fn without_tracing_the_headers_are_left_alone() {
    let app = Backend::echo("app").await;
    let gw = TestGateway::start(&config(app.addr, "")).await;
    let a = get_with(&gw.url("/app/x"), &[("traceparent", "garbage")]).await;
    assert_eq!(received(&a, "traceparent").as_deref(), Some("garbage"));
    let b = get(&gw.url("/app/x")).await;
    assert_eq!(received(&b, "traceparent"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_line_carries_the_trace_id() {
    let app = Backend::echo("app").await;
    let gw = ChildGateway::start(&config(app.addr, "[tracing]\nsample_ratio = 0.0"), &[]);
    let a = get_with(&gw.url("/app/x"), &[("traceparent", PARENT)]).await;
    assert_eq!(a.status, StatusCode::OK);
    let line = gw.log_line(
        |l| l.contains("access:") && l.contains("path=\"/app/x\""),
        std::time::Duration::from_secs(10),
    );
    assert!(
        line.ends_with("trace_id=4bf92f3577b34da6a3ce929d0e0e4736"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_copy_stays_in_the_trace_with_its_own_span_id() {
    let app = Backend::echo("app").await;
    let shadow = support::traffic::Recorder::start("shadow", std::time::Duration::ZERO).await;
    let toml = support::config()
        .upstream("app", &[app.addr])
        .upstream("shadow", &[shadow.backend.addr])
        .route_with("app", "/app", "app", "mirror = { upstream = \"shadow\" }")
        .toml("[tracing]")
        .build();
    let gw = TestGateway::start(&toml).await;
    let a = get_with(&gw.url("/app/x"), &[("traceparent", PARENT)]).await;
    let primary = received(&a, "traceparent").unwrap();
    assert!(shadow.wait_for(1, std::time::Duration::from_secs(10)).await);
    let copy = shadow.seen()[0]
        .headers
        .iter()
        .find(|(n, _)| n == "traceparent")
        .map(|(_, v)| v.clone())
        .expect("the copy carries a traceparent");
    assert_valid(&copy);
    assert_eq!(split(&copy).1, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(split(&copy).2, split(&primary).2);
    assert_ne!(split(&copy).2, "00f067aa0ba902b7");
}
