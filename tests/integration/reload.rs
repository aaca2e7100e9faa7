//! Hot reload: file watching (atomic saves, bursts, deletes, symlink swaps, folders), reload
//! errors, carry-over of upstream state, and zero lost requests under load.

use crate::support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

const NEW_ROUTE: &str = r#"
[[routes]]
id = "new"
match = { path_prefix = "/new" }
upstream = "app"
"#;

/// A config with one upstream `app` and the route `base`; `server` lines go into `[server]`.
fn config(backend: SocketAddr, server: &str, routes: &str) -> String {
    support::config()
        .admin()
        .server(server)
        .no_access_log()
        .upstream("app", &[backend])
        .route("base", "/base", "app")
        .toml(routes)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_route_is_served_within_a_second_of_an_atomic_save() {
    let backend = Backend::echo("app").await;
    let gw = TestGateway::start(&config(backend.addr, "", "")).await;
    assert_eq!(get(&gw.url("/new/x")).await.status, StatusCode::NOT_FOUND);
    let mut rx = gw.running().gateway.reload_status();

    let saved = Instant::now();
    save_atomically(&gw.config_path(), &config(backend.addr, "", NEW_ROUTE));
    let status = next_reload(&mut rx, Duration::from_secs(1)).await;
    assert!(status.errors.is_none(), "{:?}", status.errors);
    let a = get(&gw.url("/new/x")).await;
    let took = saved.elapsed();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["path"], "/new/x");
    assert!(
        took < Duration::from_secs(1),
        "save to serving took {took:?}"
    );
    assert_eq!(gw.running().gateway.generation(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_toml_and_unknown_upstream_keep_the_old_config_and_are_reported() {
    let backend = Backend::echo("app").await;
    let gw = TestGateway::start(&config(backend.addr, "watch = false", "")).await;
    let running = gw.running();
    let path = gw.config_path();

    let cases = [
        // Broken TOML: an unclosed inline table.
        config(
            backend.addr,
            "watch = false",
            "[[routes]]\nid = \"x\"\nmatch = { path = \"/x\"\n",
        ),
        // Valid TOML, unknown upstream.
        config(
            backend.addr,
            "watch = false",
            "[[routes]]\nid = \"x\"\nmatch = { path = \"/x\" }\nupstream = \"nope\"\n",
        ),
    ];
    for (i, text) in cases.iter().enumerate() {
        std::fs::write(&path, text).unwrap();
        let a = admin_post(running, "/admin/reload").await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "case {i}");
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
        let body = a.json();
        // The same lines `portico check` prints, each with file:line:col.
        let (code, _, stderr) = portico_cli(&["check", "--config", path.to_str().unwrap()]);
        assert_eq!(code, 1);
        let check_lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.ends_with("problem(s) found"))
            .collect();
        let reported: Vec<&str> = body["text"].as_str().unwrap().lines().collect();
        assert_eq!(reported, check_lines, "case {i}");
        let first = &body["errors"][0];
        assert!(first["line"].as_u64().unwrap() > 0, "{first}");
        assert!(
            first["text"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}:", path.display()))
        );
        if i == 1 {
            assert_eq!(first["key"], "routes[1].upstream");
            assert!(
                first["message"]
                    .as_str()
                    .unwrap()
                    .contains("unknown upstream `nope`")
            );
        }
        // The old config keeps serving.
        assert_eq!(get(&gw.url("/base/1")).await.status, StatusCode::OK);
        assert_eq!(running.gateway.generation(), 1);
    }
    let cfg = admin_get(running, "/admin/config").await.json();
    assert_eq!(cfg["last_reload"]["ok"], false);
    assert_eq!(cfg["last_reload"]["attempts"], 2);
    let m = scrape(running).await;
    assert_eq!(
        metric(
            &m,
            "portico_config_reloads_total",
            &[("outcome", "failure")]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &m,
            "portico_config_reloads_total",
            &[("outcome", "success")]
        ),
        Some(0.0)
    );

    // Fixing the file and reloading answers 200 with the new version and what changed.
    std::fs::write(&path, config(backend.addr, "watch = false", NEW_ROUTE)).unwrap();
    let a = admin_post(running, "/admin/reload").await;
    assert_eq!(a.status, StatusCode::OK);
    let body = a.json();
    assert_eq!(body["generation"], 2);
    assert_eq!(body["version"], running.gateway.runtime().version);
    assert_eq!(
        body["changes"]["routes"]["added"],
        serde_json::json!(["new"])
    );
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .starts_with("routes +1 -0 ~0 (added: new)")
    );
    assert_eq!(get(&gw.url("/new")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_file_events_causes_at_most_two_reloads() {
    let backend = Backend::echo("app").await;
    let gw = TestGateway::start(&config(backend.addr, "", "")).await;
    let mut rx = gw.running().gateway.reload_status();
    let path = gw.config_path();
    for i in 0..999 {
        // In-place rewrites (truncate + write): the worst case for a watcher.
        std::fs::write(
            &path,
            format!("# save {i}\n{}", config(backend.addr, "", "")),
        )
        .unwrap();
    }
    std::fs::write(&path, config(backend.addr, "", NEW_ROUTE)).unwrap();

    let mut status = next_reload(&mut rx, Duration::from_secs(5)).await;
    // Give a second (allowed) reload and a forbidden third the chance to happen.
    while let Ok(Ok(())) = tokio::time::timeout(Duration::from_millis(1500), rx.changed()).await {
        status = rx.borrow_and_update().clone();
        if status.attempts > 2 {
            break;
        }
    }
    assert!(
        status.attempts <= 2,
        "{} reloads for one burst",
        status.attempts
    );
    assert!(
        status.errors.is_none(),
        "last reload failed: {:?}",
        status.errors
    );
    assert_eq!(get(&gw.url("/new")).await.status, StatusCode::OK);
    let m = scrape(gw.running()).await;
    let ok = metric(
        &m,
        "portico_config_reloads_total",
        &[("outcome", "success")],
    )
    .unwrap();
    let failed = metric(
        &m,
        "portico_config_reloads_total",
        &[("outcome", "failure")],
    )
    .unwrap();
    assert!(
        ok + failed <= 2.0 && ok >= 1.0,
        "success {ok}, failure {failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_then_recreated_file_is_picked_up() {
    let backend = Backend::echo("app").await;
    let gw = TestGateway::start(&config(backend.addr, "", "")).await;
    let mut rx = gw.running().gateway.reload_status();
    let path = gw.config_path();

    std::fs::remove_file(&path).unwrap();
    let status = next_reload(&mut rx, Duration::from_secs(5)).await;
    let errors = status.errors.expect("a missing file fails the reload");
    assert!(errors.to_string().contains("cannot read file"), "{errors}");
    assert_eq!(
        get(&gw.url("/base")).await.status,
        StatusCode::OK,
        "old config keeps serving"
    );

    std::fs::write(&path, config(backend.addr, "", NEW_ROUTE)).unwrap();
    let status = next_reload(&mut rx, Duration::from_secs(5)).await;
    assert!(status.errors.is_none(), "{:?}", status.errors);
    assert_eq!(status.generation, 2);
    assert_eq!(get(&gw.url("/new")).await.status, StatusCode::OK);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_configmap_symlink_swap_is_picked_up() {
    use std::os::unix::fs::symlink;
    let backend = Backend::echo("app").await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The layout kubelet makes: files are symlinks through `..data` to a timestamped folder.
    write(root, "..v1/gateway.toml", &config(backend.addr, "", ""));
    symlink("..v1", root.join("..data")).unwrap();
    symlink("..data/gateway.toml", root.join("gateway.toml")).unwrap();
    let running = portico::Running::start(&root.join("gateway.toml"))
        .await
        .unwrap();
    let mut rx = running.gateway.reload_status();
    let url = format!("http://{}/new", running.http_addr());
    assert_eq!(get(&url).await.status, StatusCode::NOT_FOUND);

    // kubelet's update: new folder, new symlink, atomic rename over `..data`, old folder gone.
    write(
        root,
        "..v2/gateway.toml",
        &config(backend.addr, "", NEW_ROUTE),
    );
    symlink("..v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..v1")).unwrap();

    let status = next_reload(&mut rx, Duration::from_secs(5)).await;
    assert!(status.errors.is_none(), "{:?}", status.errors);
    assert_eq!(get(&url).await.status, StatusCode::OK);
}

/// A folder in `Runtime.sources` (the bff/ profile folder) is watched itself: editing a file in
/// it reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_edit_inside_a_watched_source_folder_reloads() {
    let backend = Backend::echo("app").await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "gateway.toml", &config(backend.addr, "", ""));
    write(dir.path(), "bff/web.toml", "name = \"web\"\n");
    let path = dir.path().join("gateway.toml");
    let mut rt = portico::runtime::load(&path, None).unwrap();
    rt.sources.push(dir.path().join("bff"));
    let running = portico::Running::start_with(path, rt).await.unwrap();
    let mut rx = running.gateway.reload_status();

    write(dir.path(), "bff/web.toml", "name = \"web\"\n# edited\n");
    let status = next_reload(&mut rx, Duration::from_secs(5)).await;
    assert!(status.errors.is_none(), "{:?}", status.errors);
    assert_eq!(status.generation, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_on_the_runtime_they_started_with() {
    let held = HeldBackend::start().await;
    let slow = r#"
[[routes]]
id = "slow"
match = { path_prefix = "/slow" }
upstream = "app"
"#;
    let gw = TestGateway::start(&config(held.backend.addr, "watch = false", slow)).await;
    let url = gw.url("/slow/1");
    let in_flight = tokio::spawn(async move { get(&url).await });
    held.wait_arrival().await;

    // The new config drops the route and points `app` elsewhere.
    let dead = dead_addr().await;
    std::fs::write(gw.config_path(), config(dead, "watch = false", "")).unwrap();
    gw.running().gateway.reload().unwrap();
    assert_eq!(get(&gw.url("/slow/2")).await.status, StatusCode::NOT_FOUND);

    held.release(1);
    let a = in_flight.await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["path"], "/slow/1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_upstreams_keep_their_pool_and_route_counts_go_on() {
    let backend = Backend::echo("app").await;
    let gw = TestGateway::start(&config(backend.addr, "watch = false", "")).await;
    let g = &gw.running().gateway;
    assert_eq!(get(&gw.url("/base")).await.status, StatusCode::OK);
    let before = g.runtime();

    std::fs::write(
        gw.config_path(),
        config(backend.addr, "watch = false", NEW_ROUTE),
    )
    .unwrap();
    let after = g.reload().unwrap();
    assert!(
        Arc::ptr_eq(&before.upstreams["app"], &after.upstreams["app"]),
        "pool carried over"
    );
    assert_eq!(get(&gw.url("/base")).await.status, StatusCode::OK);
    let m = scrape(gw.running()).await;
    let base_2xx = [("route", "base"), ("code", "2xx")];
    assert_eq!(metric(&m, "portico_requests_total", &base_2xx), Some(2.0));

    let changed = config(backend.addr, "watch = false", NEW_ROUTE).replace(
        &format!("endpoints = [\"{}\"]", backend.addr),
        &format!("endpoints = [\"{}\"]\ntimeout = \"5s\"", backend.addr),
    );
    std::fs::write(gw.config_path(), changed).unwrap();
    let third = g.reload().unwrap();
    assert!(
        !Arc::ptr_eq(&after.upstreams["app"], &third.upstreams["app"]),
        "new settings, new upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_listen_address_is_refused_with_restart_needed() {
    let backend = Backend::echo("app").await;
    let gw = TestGateway::start(&config(backend.addr, "watch = false", "")).await;
    let other = dead_addr().await;
    let text = config(backend.addr, "watch = false", NEW_ROUTE).replace(
        "listen = \"127.0.0.1:0\"\nadmin",
        &format!("listen = \"{other}\"\nadmin"),
    );
    std::fs::write(gw.config_path(), &text).unwrap();
    let a = admin_post(gw.running(), "/admin/reload").await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let e = &a.json()["errors"][0];
    assert_eq!(e["key"], "server.listen");
    assert_eq!(e["line"], 2);
    assert!(
        e["message"].as_str().unwrap().contains("needs a restart"),
        "{e}"
    );
    // Nothing of the new file applies (not even the new route).
    assert_eq!(get(&gw.url("/new")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&gw.url("/base")).await.status, StatusCode::OK);

    // The connection cap sizes the listeners' accept limit: also restart-only.
    let text = config(backend.addr, "watch = false", "")
        + "
[limits]
max_connections = 5
";
    std::fs::write(gw.config_path(), &text).unwrap();
    let a = admin_post(gw.running(), "/admin/reload").await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.json()["errors"][0]["key"], "limits.max_connections");
    assert_eq!(gw.running().gateway.generation(), 1);
}

/// At least 20 reloads while 4 keep-alive clients send requests without pause: every request
/// gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_sustained_keepalive_load_lose_no_request() {
    let backend = Backend::echo("app").await;
    let variant = |n: usize| {
        // Alternate a response header; every 5th config also changes the upstream (new pool).
        let timeout = if n % 5 == 0 { "timeout = \"9s\"\n" } else { "" };
        config(backend.addr, "watch = false", "")
            .replace(
                "upstream = \"app\"\n",
                &format!("upstream = \"app\"\nresponse_headers = {{ set = {{ \"x-variant\" = \"v{}\" }} }}\n", n % 2),
            )
            .replace(
                &format!("endpoints = [\"{}\"]", backend.addr),
                &format!("endpoints = [\"{}\"]\n{timeout}", backend.addr),
            )
    };
    let gw = TestGateway::start(&variant(1)).await;
    let url = gw.url("/base/load");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (url, stop, ok, progress) = (url.clone(), stop.clone(), ok.clone(), progress.clone());
        clients.push(tokio::spawn(async move {
            let client = h1_client();
            let mut failures = Vec::new();
            let mut variants = std::collections::BTreeSet::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let req = Request::get(&url).body(Full::<Bytes>::default()).unwrap();
                match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                    Ok(Ok(resp)) if resp.status() == StatusCode::OK => {
                        if let Some(v) = resp.headers().get("x-variant") {
                            variants.insert(v.to_str().unwrap().to_string());
                        }
                        let body = http_body_util::BodyExt::collect(resp.into_body()).await;
                        match body {
                            Ok(_) => {
                                ok.fetch_add(1, Ordering::SeqCst);
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
            (failures, variants)
        }));
    }

    let g = gw.running().gateway.clone();
    let reloads = 24;
    for n in 0..reloads {
        // Let the clients make progress between reloads.
        let target = ok.load(Ordering::SeqCst) + 20;
        tokio::time::timeout(Duration::from_secs(10), async {
            while ok.load(Ordering::SeqCst) < target {
                progress.notified().await;
            }
        })
        .await
        .expect("clients stalled");
        std::fs::write(gw.config_path(), variant(n)).unwrap();
        let g = g.clone();
        tokio::task::spawn_blocking(move || g.reload_by("test"))
            .await
            .unwrap()
            .unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let mut seen = std::collections::BTreeSet::new();
    for c in clients {
        let (failures, variants) = c.await.unwrap();
        assert!(failures.is_empty(), "lost requests: {failures:?}");
        seen.extend(variants);
    }
    assert_eq!(g.generation(), 1 + reloads as u64);
    assert!(
        ok.load(Ordering::SeqCst) >= 20 * reloads,
        "{} requests",
        ok.load(Ordering::SeqCst)
    );
    assert_eq!(seen.len(), 2, "both configs served: {seen:?}");
    assert_eq!(backend.hits(), ok.load(Ordering::SeqCst));
}
