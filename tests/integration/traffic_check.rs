//! `portico check` on the traffic keys: every bad value named with file:line:col and key path,
//! and a reload with one keeps the old config.

use crate::support;

use std::time::Duration;

use support::traffic::*;
use support::*;

const BAD: &str = r#"
[[routes]]
id = "both"
match = { path_prefix = "/both" }
upstream = "a"
split = [{ upstream = "a", weight = 1 }]

[[routes]]
id = "zero"
match = { path_prefix = "/zero" }
split = [{ upstream = "a", weight = 0 }, { upstream = "b", weight = 0 }]

[[routes]]
id = "unknown"
match = { path_prefix = "/unknown" }
split = [{ upstream = "a", weight = 1 }, { upstream = "nope", weight = 1 }]
mirror = { upstream = "ghost" }

[[routes]]
id = "percent"
match = { path_prefix = "/percent" }
upstream = "a"
mirror = { upstream = "b", percent = 100.5 }
fault = { delay = "1s", delay_percent = -1, abort_status = 600 }

[[routes]]
id = "sticky"
match = { path_prefix = "/sticky" }
upstream = "a"
sticky = "cookie:x"

[[routes]]
id = "neither"
match = { path_prefix = "/neither" }
"#;

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "gateway.toml", text);
    let path = dir.path().join("gateway.toml");
    let (code, _, err) = portico_cli(&["check", "--config", path.to_str().unwrap()]);
    (code, err)
}

#[test]
fn bad_traffic_keys_are_each_reported_with_their_place() {
    let upstreams = [
        ("a", "127.0.0.1:7001".parse().unwrap()),
        ("b", "127.0.0.1:7002".parse().unwrap()),
    ];
    let text = traffic_config(&upstreams, BAD);
    let (code, err) = check(&text);
    assert_eq!(code, 1);
    for want in [
        "gateway.toml:20:9: routes[0].split: give `upstream` or `split`, not both",
        "gateway.toml:25:9: routes[1].split: needs at least one side with a positive weight",
        "gateway.toml:30:55: routes[2].split[1].upstream: unknown upstream `nope` in route `unknown`",
        "gateway.toml:31:23: routes[2].mirror.upstream: unknown upstream `ghost` in route `unknown`",
        "gateway.toml:37:38: routes[3].mirror.percent: must be a percent between 0 and 100, got 100.5",
        "gateway.toml:38:41: routes[3].fault.delay_percent: must be a percent between 0 and 100, got -1",
        "gateway.toml:38:60: routes[3].fault.abort_status: must be a status between 200 and 599, got 600",
        "gateway.toml:44:10: routes[4].sticky: `sticky` needs a `split` on the same route",
        "gateway.toml:47:6: routes[5]: needs `upstream`, `split`, `redirect` or `respond`",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_bad_split_keeps_the_old_config() {
    let a = Backend::echo("a").await;
    let good = traffic_config(
        &[("a", a.addr)],
        "[[routes]]\nid = \"r\"\nmatch = { path_prefix = \"/r\" }\nsplit = [{ upstream = \"a\", weight = 1 }]\n",
    );
    let gw = TestGateway::start(&good).await;
    std::fs::write(gw.config_path(), good.replace("weight = 1", "weight = 0")).unwrap();
    let g = gw.running().gateway.clone();
    let result = tokio::task::spawn_blocking(move || g.reload_by("test"))
        .await
        .unwrap();
    let errors = result.expect_err("a split without weight is refused");
    assert!(errors.to_string().contains("positive weight"), "{errors}");
    let ans = tokio::time::timeout(Duration::from_secs(10), get(&gw.url("/r")))
        .await
        .unwrap();
    assert_eq!(ans.header("x-backend"), Some("a"));
}
