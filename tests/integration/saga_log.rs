//! The durable saga log with the real binary: `kill -9` the gateway right after a step was
//! logged, restart it on the same `[saga] dir`: the logged step is compensated once and no
//! forward step runs again (the services count their calls); a torn last record is dropped
//! and reported; `Idempotency-Key` answers survive the restart.

use crate::support;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::saga::*;
use support::traffic::*;
use support::*;

fn start(world_backends: &[Backend]) -> ChildGateway {
    let config = traffic_config(&upstreams(world_backends), SAGA_TABLE);
    tokio::task::block_in_place(|| {
        ChildGateway::start_with_files(&config, &[("bff/shop.toml", PROFILE)], &[])
    })
}

fn relaunch(gw: ChildGateway) -> ChildGateway {
    tokio::task::block_in_place(|| gw.relaunch(&[]))
}

fn kill_hard(gw: &mut ChildGateway) {
    tokio::task::block_in_place(|| gw.kill_hard());
}

async fn checkout(url: String, key: Option<&'static str>) -> Answer {
    let mut req = Request::post(url).header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let body = Bytes::from(r#"{"sku": "A1", "qty": 2, "amount": 30}"#);
    send(req.body(Full::new(body)).unwrap()).await
}

async fn wait_count(world: &World, prefix: &str, n: usize) {
    let t0 = Instant::now();
    while world.count(prefix) < n {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "`{prefix}` not called {n} time(s): {:?}",
            world.calls()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_killed_after_its_first_step_is_compensated_once_after_restart() {
    let world = Arc::new(World::default());
    world.pay_hangs.store(1, Ordering::SeqCst);
    let backends = services(&world).await;
    let mut gw = start(&backends);
    let url = gw.url("/shop/checkout");
    let client = tokio::spawn(checkout(url, None));
    // Payment is called only once the reservation is in the log (fsynced): kill right then.
    wait_count(&world, "payment POST", 1).await;
    kill_hard(&mut gw);
    let _ = client.await;
    assert_eq!(world.count("inventory DELETE"), 0, "{:?}", world.calls());

    // A crash mid-write leaves a torn last record: it is dropped and reported.
    let log = gw.dir.path().join("sagas/saga.log");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"0badc0de {\"t\":\"stu")
        .unwrap();

    let gw = relaunch(gw);
    wait_count(&world, "inventory DELETE /reservations/r-1", 1).await;
    let t0 = Instant::now();
    let saga = loop {
        let sagas = get(&gw.admin_url("/admin/sagas")).await.json();
        let s = sagas["sagas"][0].clone();
        if s["state"] == "compensated" {
            assert_eq!(sagas["log"]["bad_records"], 1, "{sagas}");
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{sagas}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(saga["endpoint"], "shop POST /checkout");
    assert_eq!(
        saga["steps"][0],
        serde_json::json!({"name": "reserve", "state": "compensated"})
    );

    // A third start finds nothing left to do.
    let gw = relaunch(gw);
    let sagas = get(&gw.admin_url("/admin/sagas")).await.json();
    assert_eq!(sagas["sagas"], serde_json::json!([]), "{sagas}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(world.count("inventory POST"), 1, "{:?}", world.calls());
    assert_eq!(world.count("inventory DELETE"), 1, "{:?}", world.calls());
    assert_eq!(world.count("payment POST"), 1, "{:?}", world.calls());
    assert_eq!(world.count("payment DELETE"), 0, "{:?}", world.calls());
    assert_eq!(world.count("shipping"), 0, "{:?}", world.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_answer_survives_a_kill_and_restart() {
    let world = Arc::new(World::default());
    let backends = services(&world).await;
    let mut gw = start(&backends);
    let first = checkout(gw.url("/shop/checkout"), Some("\"k-1\"")).await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    kill_hard(&mut gw);
    let gw = relaunch(gw);
    let again = checkout(gw.url("/shop/checkout"), Some("\"k-1\"")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("portico-idempotent-replay"), Some("true"));
    assert_eq!(world.count("inventory POST"), 1, "{:?}", world.calls());
    assert_eq!(world.count("shipping POST"), 1, "{:?}", world.calls());
    // No saga was left in flight: nothing was compensated.
    assert_eq!(world.count("inventory DELETE"), 0, "{:?}", world.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_saga_stays_stuck_across_a_restart_and_can_be_retried_there() {
    let world = Arc::new(World::default());
    world.pay_status.store(402, Ordering::SeqCst);
    world.release_failures.store(1000, Ordering::SeqCst);
    let backends = services(&world).await;
    let mut gw = start(&backends);
    let a = checkout(gw.url("/shop/checkout"), None).await;
    assert_eq!(a.status, 409);
    assert_eq!(a.json()["compensation"], "stuck");
    let id = a.json()["saga_id"].as_str().unwrap().to_string();
    assert_eq!(world.count("inventory DELETE"), 3);
    kill_hard(&mut gw);

    let gw = relaunch(gw);
    let sagas = get(&gw.admin_url("/admin/sagas")).await.json();
    assert_eq!(sagas["sagas"][0]["id"], id.as_str(), "{sagas}");
    assert_eq!(sagas["sagas"][0]["state"], "stuck", "{sagas}");
    // Stuck is not retried on its own.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(world.count("inventory DELETE"), 3);

    world.release_failures.store(0, Ordering::SeqCst);
    let url = gw.admin_url(&format!("/admin/sagas/{id}/retry-compensation"));
    let r = send(Request::post(url).body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["state"], "compensated");
    assert_eq!(world.count("inventory DELETE"), 4);
    // Finished in the log too: the next start lists nothing.
    let gw = relaunch(gw);
    let sagas = get(&gw.admin_url("/admin/sagas")).await.json();
    assert_eq!(sagas["sagas"], serde_json::json!([]), "{sagas}");
    assert_eq!(world.count("inventory POST"), 1);
}
