//! Sagas (issue 22): three fake services (inventory, payment, shipping) on loopback; the
//! success path, compensations in reverse order on a refusal or a timeout, compensation
//! retries, a stuck saga in /admin/sagas and its retry, and the check errors.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use support::traffic::*;
use support::*;

/// What the three services do, and every call they got in arrival order
/// (`"inventory DELETE /reservations/r-1 {body}"`).
#[derive(Default)]
struct World {
    calls: Mutex<Vec<String>>,
    /// Status of payment's forward call (0: 200).
    pay_status: AtomicUsize,
    /// Shipping hangs instead of answering.
    ship_hangs: AtomicUsize,
    /// Inventory's compensation fails (500) this many more times.
    release_failures: AtomicUsize,
}

impl World {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn count(&self, prefix: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }
}

async fn service(name: &'static str, world: Arc<World>) -> Backend {
    Backend::start(move |req: Request<Incoming>| {
        let world = world.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let line = format!(
                "{name} {} {} {}",
                parts.method,
                parts.uri.path(),
                String::from_utf8_lossy(&body)
            );
            world
                .calls
                .lock()
                .unwrap()
                .push(line.trim_end().to_string());
            let forward = parts.method == http::Method::POST;
            match (name, forward) {
                ("inventory", true) => {
                    json_response(201, serde_json::json!({"id": "r-1", "sku": "A1"}))
                }
                ("inventory", false) => {
                    let left = world.release_failures.load(Ordering::SeqCst);
                    if left > 0 {
                        world.release_failures.store(left - 1, Ordering::SeqCst);
                        json_response(500, serde_json::json!({}))
                    } else {
                        json_response(200, serde_json::json!({"released": true}))
                    }
                }
                ("payment", true) => match world.pay_status.load(Ordering::SeqCst) {
                    0 => json_response(200, serde_json::json!({"id": "p-1", "secret": "x"})),
                    s => json_response(s as u16, serde_json::json!({"error": "declined"})),
                },
                ("shipping", true) if world.ship_hangs.load(Ordering::SeqCst) > 0 => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    json_response(200, serde_json::json!({"id": "late"}))
                }
                ("shipping", true) => {
                    json_response(200, serde_json::json!({"id": "s-1", "eta": "2d"}))
                }
                _ => json_response(200, serde_json::json!({})),
            }
        }
    })
    .await
}

const PROFILE: &str = r#"
name = "shop"
mount = "/shop"
deadline = "3s"

[[endpoints]]
method = "POST"
path = "/checkout"
saga = true

  [[endpoints.steps]]
  name = "reserve"
  upstream = "inventory"
  path = "/reservations"
  body = '{"sku": "{body.sku}", "qty": {body.qty}}'
  compensate = { method = "DELETE", path = "/reservations/{reserve.id}", attempts = 3, backoff = "10ms" }

  [[endpoints.steps]]
  name = "pay"
  upstream = "payment"
  path = "/payments"
  body = { amount = "{body.amount}", reservation = "{reserve.id}" }
  fields = ["id"]
  compensate = { method = "DELETE", path = "/payments/{pay.id}", attempts = 3, backoff = "10ms" }

  [[endpoints.steps]]
  name = "ship"
  upstream = "shipping"
  path = "/shipments"
  timeout = "300ms"
  body = { reservation = "{reserve.id}" }
"#;

struct Shop {
    world: Arc<World>,
    gw: TestGateway,
    _backends: Vec<Backend>,
}

async fn shop() -> Shop {
    let world = Arc::new(World::default());
    let inv = service("inventory", world.clone()).await;
    let pay = service("payment", world.clone()).await;
    let ship = service("shipping", world.clone()).await;
    let config = traffic_config(
        &[
            ("inventory", inv.addr),
            ("payment", pay.addr),
            ("shipping", ship.addr),
        ],
        "",
    );
    let gw = TestGateway::start_with_files(&config, &[("bff/shop.toml", PROFILE)]).await;
    Shop {
        world,
        gw,
        _backends: vec![inv, pay, ship],
    }
}

async fn checkout(s: &Shop) -> Answer {
    let req = Request::post(s.gw.url("/shop/checkout"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            r#"{"sku": "A1", "qty": 2, "amount": 30}"#,
        )))
        .unwrap();
    send(req).await
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
        "endpoints[0].parts: a saga endpoint runs `steps`, not `parts`",
        "endpoints[1].steps[0].compensate: the compensation of step `a` reads the later step `b`",
        "endpoints[1].steps[1].upstream: unknown upstream `nowhere`",
        "endpoints[2].steps: `steps` run only on a saga endpoint: add `saga = true`",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
}
