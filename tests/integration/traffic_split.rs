//! Weighted split (canary) and stickiness: shares, sticky keys, the sticky cookie, moving
//! weights by reload, and the split metric.

use crate::support;

use std::collections::BTreeMap;

use support::traffic::*;
use support::*;

fn split_route(weights: (u32, u32), sticky: &str) -> String {
    format!(
        r#"
[[routes]]
id = "checkout"
match = {{ path_prefix = "/checkout" }}
split = [{{ upstream = "stable", weight = {} }}, {{ upstream = "canary", weight = {} }}]
{sticky}
"#,
        weights.0, weights.1
    )
}

async fn two_backends() -> (Backend, Backend) {
    (Backend::echo("stable").await, Backend::echo("canary").await)
}

fn config(b: &(Backend, Backend), route: &str) -> String {
    traffic_config(&[("stable", b.0.addr), ("canary", b.1.addr)], route)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_95_5_split_sends_5_percent_to_the_canary_and_counts_sides() {
    let b = two_backends().await;
    let gw = TestGateway::start(&config(&b, &split_route((95, 5), ""))).await;
    let shots = vec![Shot::get(&gw.url("/checkout/pay")); 4000];
    let outcomes = fire(shots, 8).await;
    assert!(outcomes.iter().all(|o| o.status == 200));
    let t = tally(&outcomes);
    let canary = t.get("canary").copied().unwrap_or(0) as f64 / 4000.0 * 100.0;
    assert!(
        (3.0..=7.0).contains(&canary),
        "canary share {canary}% ({t:?})"
    );
    assert_eq!(
        t.get("stable").copied().unwrap_or(0) + t.get("canary").copied().unwrap_or(0),
        4000
    );

    let m = scrape(gw.running()).await;
    let side = |u: &str| {
        metric(
            &m,
            "portico_route_split_total",
            &[("route", "checkout"), ("upstream", u)],
        )
        .unwrap_or(-1.0) as usize
    };
    assert_eq!(side("canary"), t["canary"]);
    assert_eq!(side("stable"), t["stable"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_by_header_keeps_every_key_on_its_side() {
    let b = two_backends().await;
    let route = split_route((50, 50), r#"sticky = "header:x-user""#);
    let gw = TestGateway::start(&config(&b, &route)).await;
    let url = gw.url("/checkout");
    let mut shots = Vec::new();
    for round in 0..20 {
        for key in 0..500 {
            // Vary the order of keys between rounds.
            let k = (key * 7 + round * 13) % 500;
            shots.push(Shot::get(&url).header("x-user", &format!("user-{k}")));
        }
    }
    let outcomes = fire(shots.clone(), 8).await;
    let mut side: BTreeMap<String, &str> = BTreeMap::new();
    for (shot, o) in shots.iter().zip(&outcomes) {
        assert_eq!(o.status, 200);
        let key = shot.headers[0].1.clone();
        let first = side.entry(key.clone()).or_insert(&o.backend);
        assert_eq!(*first, o.backend, "{key} switched sides");
    }
    assert_eq!(side.len(), 500);
    let canaries = side.values().filter(|s| **s == "canary").count();
    assert!(
        (175..=325).contains(&canaries),
        "{canaries} of 500 keys on the canary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookie_is_set_once_and_keeps_the_client() {
    let b = two_backends().await;
    let route = split_route(
        (50, 50),
        "sticky = \"cookie:portico-split\"\nsticky_max_age = \"2h\"",
    );
    let gw = TestGateway::start(&config(&b, &route)).await;
    let url = gw.url("/checkout");
    let mut sides = BTreeMap::new();
    for _ in 0..40 {
        let first = get(&url).await;
        let set = first
            .header("set-cookie")
            .expect("a new client gets the cookie");
        let attrs: Vec<&str> = set.split("; ").collect();
        assert!(attrs[0].starts_with("portico-split="), "{set}");
        for a in ["Path=/", "Max-Age=7200", "HttpOnly", "SameSite=Lax"] {
            assert!(attrs.contains(&a), "{a} missing in {set}");
        }
        let side = first.header("x-backend").unwrap().to_string();
        for _ in 0..20 {
            let again = get_with(&url, &[("cookie", &format!("a=b; {}", attrs[0]))]).await;
            assert_eq!(again.header("x-backend").unwrap(), side);
            assert!(
                again.header("set-cookie").is_none(),
                "the cookie is set once"
            );
        }
        *sides.entry(side).or_insert(0) += 1;
    }
    assert_eq!(sides.len(), 2, "clients land on both sides: {sides:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_weights_5_to_25_moves_only_the_clients_that_must_move() {
    let b = two_backends().await;
    let sticky = r#"sticky = "header:x-user""#;
    let gw = TestGateway::start(&config(&b, &split_route((95, 5), sticky))).await;
    let url = gw.url("/checkout");
    let shots: Vec<Shot> = (0..2000)
        .map(|k| Shot::get(&url).header("x-user", &format!("client-{k}")))
        .collect();
    let before = fire(shots.clone(), 8).await;

    std::fs::write(gw.config_path(), config(&b, &split_route((75, 25), sticky))).unwrap();
    let g = gw.running().gateway.clone();
    tokio::task::spawn_blocking(move || g.reload_by("test"))
        .await
        .unwrap()
        .unwrap();
    let after = fire(shots, 8).await;

    let (mut stable_before, mut moved) = (0, 0);
    for (x, y) in before.iter().zip(&after) {
        assert_eq!((x.status, y.status), (200, 200));
        assert!(
            !(x.backend == "canary" && y.backend == "stable"),
            "a canary client went back to stable"
        );
        if x.backend == "stable" {
            stable_before += 1;
            moved += usize::from(y.backend == "canary");
        }
    }
    // Exactly the keys in [75, 95) of 100 move: 20/95 of the stable side, about 21%.
    let share = moved as f64 / stable_before as f64;
    assert!(
        (0.16..=0.26).contains(&share),
        "{moved} of {stable_before} stable clients moved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_weight_drains_a_side() {
    let b = two_backends().await;
    let gw = TestGateway::start(&config(&b, &split_route((0, 1), r#"sticky = "ip""#))).await;
    let outcomes = fire(vec![Shot::get(&gw.url("/checkout")); 200], 4).await;
    assert_eq!(tally(&outcomes).get("canary"), Some(&200));
    assert_eq!(b.0.hits(), 0);
}

#[test]
fn routes_lists_the_split_sides() {
    let dir = tempfile::tempdir().unwrap();
    let text = traffic_config(
        &[
            ("stable", "127.0.0.1:7001".parse().unwrap()),
            ("canary", "127.0.0.1:7002".parse().unwrap()),
        ],
        &split_route((95, 5), ""),
    );
    write(dir.path(), "gateway.toml", &text);
    let path = dir.path().join("gateway.toml");
    let (code, out, err) = portico_cli(&["routes", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stable:95,canary:5"), "{out}");
}
