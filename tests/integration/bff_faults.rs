//! Every kind of backend fault gets an answer in bounded time, as a partial answer (optional
//! part) or a 502/504 (required part), and leaves no connection or task behind.

use crate::support;

use std::time::{Duration, Instant};

use support::*;

const KINDS: [(&str, Fault, &str, u16); 7] = [
    ("hang", Fault::Hang, "timeout", 504),
    ("drip", Fault::SlowDrip, "timeout", 504),
    ("reset", Fault::Reset, "upstream-error", 502),
    ("garbage", Fault::Garbage, "upstream-error", 502),
    ("html", Fault::WrongContentType, "not-json", 502),
    ("huge", Fault::HugeBody, "too-large", 502),
    ("down", Fault::ServerError, "bad-status;status=503", 502),
];

fn config(backends: &[(&str, &RawBackend)]) -> (String, String) {
    let mut gateway = support::config();
    let mut bff = profile("/f").keys("deadline = \"1s\"\nmax_part_bytes = \"64KiB\"");
    for (name, b) in backends {
        gateway = gateway.upstream_with(name, &[b.addr], "timeout = \"10s\"");
        if *name == "ok" {
            continue;
        }
        for (mode, required) in [("opt", false), ("req", true)] {
            bff = bff
                .endpoint(&format!("/{mode}/{name}"))
                .part("ok", "ok", "/ok", "fields = [\"backend\"]")
                .part(
                    "p",
                    name,
                    "/p",
                    &format!("timeout = \"300ms\"\nrequired = {required}"),
                );
        }
    }
    (gateway.build(), bff.build())
}

#[tokio::test]
async fn every_fault_kind_gets_an_answer_in_bounded_time_and_leaves_nothing_running() {
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let ok = RawBackend::start("ok", Fault::Delay(Duration::ZERO)).await;
    let mut backends = vec![("ok", ok)];
    for (name, fault, _, _) in KINDS {
        backends.push((name, RawBackend::start(name, fault).await));
    }
    let refs: Vec<(&str, &RawBackend)> = backends.iter().map(|(n, b)| (*n, b)).collect();
    let (gateway, profile) = config(&refs);
    let gw = TestGateway::start_with_files(&gateway, &[("bff/f.toml", &profile)]).await;

    for (i, (name, _, reason, status)) in KINDS.iter().enumerate() {
        let backend = &backends[i + 1].1;

        let t = Instant::now();
        let opt = get(&gw.url(&format!("/f/opt/{name}"))).await;
        let took = t.elapsed();
        assert_eq!(opt.status, 200, "{name}");
        assert!(took < Duration::from_secs(2), "{name}: {took:?}");
        assert_eq!(
            opt.header("portico-partial"),
            Some(format!("p;reason={reason}").as_str()),
            "{name}"
        );
        let v = opt.json();
        assert_eq!(v["ok"]["backend"], "ok", "{name}");
        assert_eq!(
            v["_partial"]["p"],
            reason.split(';').next().unwrap(),
            "{name}"
        );
        assert!(v.get("p").is_none(), "{name}");

        let t = Instant::now();
        let req = get(&gw.url(&format!("/f/req/{name}"))).await;
        let took = t.elapsed();
        assert_eq!(req.status, *status, "{name}: {:?}", req.body);
        assert!(took < Duration::from_secs(2), "{name}: {took:?}");
        assert_eq!(
            req.header("content-type"),
            Some("application/problem+json"),
            "{name}"
        );
        assert!(
            req.json()["detail"].as_str().unwrap().contains("`p`"),
            "{name}"
        );

        assert_eq!(backend.requests().len(), 2, "{name}: one call per request");
        assert!(
            backend.all_closed(Duration::from_secs(3)).await,
            "{name}: the gateway left {} connection(s) open",
            backend.open.get()
        );
    }

    // Part counters saw every outcome.
    let rt = gw.running().gateway.runtime();
    let ep = &rt.bff.profile("f").unwrap().endpoints[0];
    use portico::bff::metrics::{Completion, Outcome};
    assert_eq!(ep.parts[1].stats.count(Outcome::Timeout), 1);
    assert_eq!(ep.stats.count(Completion::Partial), 1);
    drop(rt);

    // Stop everything: no task of the gateway (part calls, pooled connections) survives.
    let TestGateway { running, dir, .. } = gw;
    assert!(running.unwrap().shutdown().await, "drained");
    drop(backends);
    drop(dir);
    let handle = tokio::runtime::Handle::current();
    let mut alive = handle.metrics().num_alive_tasks();
    for _ in 0..500 {
        if alive <= baseline {
            break;
        }
        // No signal exists for "a task ended": poll, bounded to 5 s.
        tokio::time::sleep(Duration::from_millis(10)).await;
        alive = handle.metrics().num_alive_tasks();
    }
    assert!(
        alive <= baseline,
        "{alive} tasks alive, {baseline} before the test"
    );
}
