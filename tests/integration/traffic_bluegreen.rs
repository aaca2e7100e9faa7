//! Blue-green: switching a route's upstream by reload under keep-alive load loses no request,
//! and requests in flight on the old side finish there.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::traffic::*;
use support::*;

fn config(blue: &Recorder, green: &Recorder, live: &str) -> String {
    traffic_config(
        &[("blue", blue.backend.addr), ("green", green.backend.addr)],
        &format!(
            "[[routes]]\nid = \"app\"\nmatch = {{ path_prefix = \"/app\" }}\nupstream = \"{live}\"\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_blue_to_green_under_keepalive_load_fails_no_request() {
    // Each answer takes 30 ms, so every switch happens with requests in flight on the old side.
    let blue = Recorder::start("blue", Duration::from_millis(30)).await;
    let green = Recorder::start("green", Duration::from_millis(30)).await;
    let gw = TestGateway::start(&config(&blue, &green, "blue")).await;
    let url = gw.url("/app/x");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut clients = Vec::new();
    for _ in 0..6 {
        let (url, stop, ok, progress) = (url.clone(), stop.clone(), ok.clone(), progress.clone());
        clients.push(tokio::spawn(async move {
            let client = h1_client();
            let (mut failures, mut sides) = (Vec::new(), Vec::new());
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let req = Request::get(&url).body(Full::<Bytes>::default()).unwrap();
                match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                    Ok(Ok(resp)) if resp.status() == StatusCode::OK => {
                        let side = resp.headers()["x-backend"].to_str().unwrap().to_string();
                        match http_body_util::BodyExt::collect(resp.into_body()).await {
                            Ok(_) => {
                                ok.fetch_add(1, Ordering::SeqCst);
                                sides.push(side);
                            }
                            Err(e) => failures.push(format!("body: {e}")),
                        }
                    }
                    Ok(Ok(resp)) => failures.push(format!("status {}", resp.status())),
                    Ok(Err(e)) => failures.push(format!("error: {e}")),
                    Err(_) => failures.push("timeout".into()),
                }
                progress.notify_waiters();
            }
            (failures, sides)
        }));
    }

    let g = gw.running().gateway.clone();
    // Lets the clients make 30 more requests on the current side.
    let progress_on_this_side = || async {
        let target = ok.load(Ordering::SeqCst) + 30;
        tokio::time::timeout(Duration::from_secs(10), async {
            while ok.load(Ordering::SeqCst) < target {
                progress.notified().await;
            }
        })
        .await
        .expect("clients stalled");
    };
    let switches = ["green", "blue", "green", "blue", "green"];
    for live in switches {
        progress_on_this_side().await;
        std::fs::write(gw.config_path(), config(&blue, &green, live)).unwrap();
        let g = g.clone();
        tokio::task::spawn_blocking(move || g.reload_by("test"))
            .await
            .unwrap()
            .unwrap();
    }
    // The last side serves a share too before the clients stop (each side then served at least
    // two rounds of 30, whatever the timing of the switches).
    progress_on_this_side().await;
    stop.store(true, Ordering::SeqCst);
    let (mut blue_answers, mut green_answers) = (0, 0);
    for c in clients {
        let (failures, sides) = c.await.unwrap();
        assert!(failures.is_empty(), "failed requests: {failures:?}");
        blue_answers += sides.iter().filter(|s| *s == "blue").count();
        green_answers += sides.iter().filter(|s| *s == "green").count();
    }
    assert!(
        blue_answers >= 60 && green_answers >= 60,
        "{blue_answers} / {green_answers}"
    );
    // Every request a side received was answered to a client: the old side drained in place.
    assert_eq!(blue.seen().len(), blue_answers);
    assert_eq!(green.seen().len(), green_answers);
    // After the last switch, new requests go to green only.
    let after = fire(vec![Shot::get(&url); 20], 4).await;
    assert_eq!(tally(&after).get("green"), Some(&20));
}
