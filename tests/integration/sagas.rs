//! Sagas: three fake services (inventory, payment, shipping) on loopback; the success path,
//! compensations in reverse order on a refusal or a timeout, compensation retries, a stuck
//! saga in /admin/sagas and its retry, `Idempotency-Key`, and the check errors.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::saga::*;
use support::traffic::*;
use support::*;

struct Shop {
    world: Arc<World>,
    gw: TestGateway,
    _backends: Vec<Backend>,
}

async fn shop() -> Shop {
    let world = Arc::new(World::default());
    let backends = services(&world).await;
    let config = traffic_config(&upstreams(&backends), SAGA_TABLE);
    let gw = TestGateway::start_with_files(&config, &[("bff/shop.toml", PROFILE)]).await;
    Shop {
        world,
        gw,
        _backends: backends,
    }
}

async fn checkout(s: &Shop) -> Answer {
    checkout_with(s, r#"{"sku": "A1", "qty": 2, "amount": 30}"#, &[]).await
}

async fn checkout_with(s: &Shop, body: &'static str, headers: &[(&str, &str)]) -> Answer {
    let mut req =
        Request::post(s.gw.url("/shop/checkout")).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::new(Bytes::from(body))).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_succeeds_and_the_answer_holds_each_shaped_answer() {
    let s = shop().await;
    let a = checkout(&s).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.json(),
        serde_json::json!({
            "reserve": {"id": "r-1", "sku": "A1"},
            "pay": {"id": "p-1"},
            "ship": {"id": "s-1", "eta": "2d"},
        })
    );
    assert_eq!(
        s.world.calls(),
        vec![
            r#"inventory POST /reservations {"qty":2,"sku":"A1"}"#.to_string(),
            r#"payment POST /payments {"amount":30,"reservation":"r-1"}"#.to_string(),
            r#"shipping POST /shipments {"reservation":"r-1"}"#.to_string(),
        ]
    );
    // Tests share the process's saga list: find this one by its id.
    let id = a
        .header("portico-saga-id")
        .expect("saga id header")
        .to_string();
    let sagas = admin_get(s.gw.running(), "/admin/sagas").await.json();
    let mine: Vec<&serde_json::Value> = sagas["sagas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["id"] == id.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{sagas}");
    assert_eq!(mine[0]["state"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_payment_releases_the_reservation_once() {
    let s = shop().await;
    s.world.pay_status.store(402, Ordering::SeqCst);
    let a = checkout(&s).await;
    assert_eq!(a.status, 409, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    let p = a.json();
    assert_eq!(p["failed_step"], "pay");
    assert_eq!(p["compensation"], "done");
    assert_eq!(s.world.count("inventory DELETE /reservations/r-1"), 1);
    assert_eq!(s.world.count("payment DELETE"), 0);
    assert_eq!(s.world.count("shipping"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipping_timeout_compensates_both_in_reverse_order() {
    let s = shop().await;
    s.world.ship_hangs.store(1, Ordering::SeqCst);
    let a = checkout(&s).await;
    assert_eq!(a.status, 504, "{}", String::from_utf8_lossy(&a.body));
    let p = a.json();
    assert_eq!(p["failed_step"], "ship");
    assert_eq!(p["compensation"], "done");
    let calls = s.world.calls();
    let undo: Vec<&String> = calls.iter().filter(|c| c.contains(" DELETE ")).collect();
    assert_eq!(
        undo,
        vec![
            "payment DELETE /payments/p-1",
            "inventory DELETE /reservations/r-1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensation_that_fails_twice_is_retried_until_it_succeeds() {
    let s = shop().await;
    s.world.pay_status.store(500, Ordering::SeqCst);
    s.world.release_failures.store(2, Ordering::SeqCst);
    let a = checkout(&s).await;
    assert_eq!(a.status, 502);
    assert_eq!(a.json()["compensation"], "done");
    assert_eq!(s.world.count("inventory DELETE /reservations/r-1"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensation_that_always_fails_leaves_the_saga_stuck_until_retried() {
    let s = shop().await;
    s.world.pay_status.store(402, Ordering::SeqCst);
    s.world.release_failures.store(1000, Ordering::SeqCst);
    let a = checkout(&s).await;
    assert_eq!(a.status, 409);
    let p = a.json();
    assert_eq!(p["compensation"], "stuck");
    let id = p["saga_id"].as_str().unwrap().to_string();
    assert_eq!(s.world.count("inventory DELETE"), 3);

    let sagas = admin_get(s.gw.running(), "/admin/sagas").await.json();
    let saga = sagas["sagas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {sagas}"))
        .clone();
    assert_eq!(saga["state"], "stuck");
    assert_eq!(saga["endpoint"], "shop POST /checkout");
    assert_eq!(
        saga["steps"][0],
        serde_json::json!({"name": "reserve", "state": "done"})
    );
    assert_eq!(
        saga["steps"][1],
        serde_json::json!({"name": "pay", "state": "failed"})
    );

    // The inventory recovers; the operator retries.
    s.world.release_failures.store(0, Ordering::SeqCst);
    let path = format!("/admin/sagas/{id}/retry-compensation");
    let r = admin_post(s.gw.running(), &path).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["state"], "compensated");
    assert_eq!(s.world.count("inventory DELETE"), 4);
    // Not stuck any more: a second retry is refused.
    assert_eq!(admin_post(s.gw.running(), &path).await.status, 409);
    assert_eq!(
        admin_post(s.gw.running(), "/admin/sagas/nope/retry-compensation")
            .await
            .status,
        404
    );
}

#[test]
fn bad_saga_endpoints_are_check_errors() {
    let config = traffic_config(&[("inventory", "127.0.0.1:7001".parse().unwrap())], "");
    let profile = r#"
[[endpoints]]
method = "POST"
path = "/both"
saga = true
  [[endpoints.parts]]
  name = "p"
  upstream = "inventory"
  path = "/p"
  [[endpoints.steps]]
  name = "a"
  upstream = "inventory"
  path = "/a"

[[endpoints]]
method = "POST"
path = "/later"
saga = true
  [[endpoints.steps]]
  name = "a"
  upstream = "inventory"
  path = "/a"
  compensate = { path = "/a/{b.id}" }
  [[endpoints.steps]]
  name = "b"
  upstream = "nowhere"
  path = "/b"

[[endpoints]]
method = "POST"
path = "/plain"
  [[endpoints.steps]]
  name = "a"
  upstream = "inventory"
  path = "/a"
"#;
    let (code, _, err) = check_config(&config, &[("bff/shop.toml", profile)]);
    assert_eq!(code, 1, "{err}");
    for want in [
        "endpoints[1].saga: a saga endpoint needs `[saga] dir` in gateway.toml",
        "endpoints[0].parts: a saga endpoint runs `steps`, not `parts`",
        "endpoints[1].steps[0].compensate: the compensation of step `a` reads the later step `b`",
        "endpoints[1].steps[1].upstream: unknown upstream `nowhere`",
        "endpoints[2].steps: `steps` run only on a saga endpoint: add `saga = true`",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_runs_the_saga_once_and_replays_its_answer() {
    let s = shop().await;
    let key = [("idempotency-key", "\"order-1\"")];
    let body = r#"{"sku": "A1", "qty": 2, "amount": 30}"#;
    let first = checkout_with(&s, body, &key).await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    // The same JSON with its keys in another order is the same body.
    let again = checkout_with(&s, r#"{"amount": 30, "qty": 2, "sku": "A1"}"#, &key).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("portico-idempotent-replay"), Some("true"));
    assert_eq!(s.world.count("inventory POST"), 1);
    assert_eq!(s.world.count("shipping POST"), 1);

    let other = checkout_with(&s, r#"{"sku": "B2", "qty": 1, "amount": 9}"#, &key).await;
    assert_eq!(
        other.status,
        422,
        "{}",
        String::from_utf8_lossy(&other.body)
    );
    assert_eq!(
        other.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        other.json()["type"],
        "https://portico.dev/problems/idempotency-key-mismatch"
    );
    assert_eq!(s.world.count("inventory POST"), 1);
    // Another key runs the saga again.
    let fresh = checkout_with(&s, body, &[("idempotency-key", "\"order-2\"")]).await;
    assert_eq!(fresh.status, 200);
    assert_eq!(s.world.count("inventory POST"), 2);
    // A malformed key is refused before anything runs.
    let bad = checkout_with(&s, body, &[("idempotency-key", "\"\"")]).await;
    assert_eq!(bad.status, 400);
    assert_eq!(s.world.count("inventory POST"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_saga_is_replayed_and_a_key_still_running_is_409() {
    let s = shop().await;
    s.world.pay_status.store(402, Ordering::SeqCst);
    let key = [("idempotency-key", "\"order-9\"")];
    let body = r#"{"sku": "A1", "qty": 2, "amount": 30}"#;
    let first = checkout_with(&s, body, &key).await;
    assert_eq!(first.status, 409);
    let again = checkout_with(&s, body, &key).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.body, first.body);
    assert_eq!(s.world.count("payment POST"), 1);

    // Shipping hangs: a repeat while the first still runs is 409 idempotency-key-in-use.
    s.world.pay_status.store(0, Ordering::SeqCst);
    s.world.ship_hangs.store(1, Ordering::SeqCst);
    let key = [("idempotency-key", "\"order-10\"")];
    let s = Arc::new(s);
    let first = {
        let s = s.clone();
        tokio::spawn(async move {
            checkout_with(&s, body, &[("idempotency-key", "\"order-10\"")]).await
        })
    };
    let t0 = std::time::Instant::now();
    while s.world.count("shipping POST") == 0 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "shipping never called"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let during = checkout_with(&s, body, &key).await;
    assert_eq!(
        during.status,
        409,
        "{}",
        String::from_utf8_lossy(&during.body)
    );
    assert_eq!(
        during.json()["type"],
        "https://portico.dev/problems/idempotency-key-in-use"
    );
    assert_eq!(first.await.unwrap().status, 504);
    assert_eq!(s.world.count("inventory POST"), 2);
}
