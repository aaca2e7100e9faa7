//! The `/status` page in a real browser: a gateway (the real binary, with an admin token)
//! serves traffic, headless Chromium loads the page, and the rendered DOM shows the routes,
//! upstream health, a non-zero request rate, a down endpoint as down and a failed reload with
//! its error. `/admin/stats` itself is checked too. Chromium comes from Debian (`.ci/deps`
//! installs it).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

const TOKEN: &str = "status-t0ken";

/// The Chromium binary: `$CHROMIUM`, else the Debian names on PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return p.into();
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = std::env::var_os("PATH")
            .map(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
            .unwrap_or_default();
        if let Some(p) = found {
            return p;
        }
    }
    panic!(
        "chromium not found: this test renders /status in headless Chromium. Install it with \
         `bash .ci/deps` (Debian package `chromium`) or set CHROMIUM=/path/to/chrome"
    );
}

/// Runs headless Chromium on `url` with a throwaway profile; `mode` is `--dump-dom` or
/// `--screenshot=FILE`. Returns stdout.
fn run_chromium(url: &str, profile: &Path, mode: &str) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--window-size=1280,1000",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(mode)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn config(app: std::net::SocketAddr, dead: std::net::SocketAddr) -> String {
    support::config()
        .admin()
        .server("admin_token_env = \"PORTICO_TEST_ADMIN_TOKEN\"\nwatch = false")
        .upstream("app", &[app])
        .upstream("down", &[dead])
        .toml("[upstreams.down.health]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nunhealthy_threshold = 1")
        .toml("[rate_limits.tight]\nrate = \"1/m\"\nburst = 1\nkey = \"ip\"")
        .route("app", "/app", "app")
        .route("broken", "/broken", "down")
        .route_with("tight", "/tight", "app", "rate_limit = \"tight\"")
        .build()
}

async fn admin_get_token(url: &str) -> Answer {
    send(
        Request::get(url)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::default())
            .unwrap(),
    )
    .await
}

/// The cells of the table row whose first cell is `first`, in the dumped DOM.
fn row_cells(dom: &str, table_id: &str, first: &str) -> Vec<String> {
    let table = dom
        .split(&format!("id=\"{table_id}\""))
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_else(|| panic!("no table {table_id} in:\n{dom}"));
    for row in table.split("<tr>").skip(1) {
        let cells: Vec<String> = row
            .split("<td")
            .skip(1)
            .map(|c| {
                let text = c.split_once('>').map_or("", |(_, t)| t);
                text.split("</td>").next().unwrap_or("").to_owned()
            })
            .collect();
        if cells.first().map(String::as_str) == Some(first) {
            return cells;
        }
    }
    panic!("no row {first} in table {table_id}:\n{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_routes_health_rates_a_down_endpoint_and_a_failed_reload() {
    let browser = chromium();
    let app = Backend::echo("app").await;
    let dead = dead_addr().await;
    let gw = ChildGateway::start(
        &config(app.addr, dead),
        &[("PORTICO_TEST_ADMIN_TOKEN", TOKEN)],
    );
    for _ in 0..40 {
        assert_eq!(get(&gw.url("/app/x")).await.status, StatusCode::OK);
    }
    assert_eq!(get(&gw.url("/broken")).await.status.as_u16() / 100, 5);
    assert_eq!(get(&gw.url("/tight")).await.status, StatusCode::OK);
    assert_eq!(
        get(&gw.url("/tight")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // The page shell needs no token (it holds no data); the numbers do.
    let page = get(&gw.admin_url("/status")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
    assert_eq!(
        get(&gw.admin_url("/admin/stats")).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Wait (bounded) until the health check has marked the dead endpoint.
    let until = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let s = admin_get_token(&gw.admin_url("/admin/stats")).await;
        assert_eq!(s.status, StatusCode::OK);
        let v = s.json();
        let down = &v["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == "down")
            .unwrap()["endpoints"][0];
        if down["health"] == "unhealthy" {
            break v;
        }
        assert!(Instant::now() < until, "never unhealthy: {v:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let route = stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "app")
        .unwrap();
    assert!(route["rate"].as_f64().unwrap() > 0.0, "{route}");
    assert_eq!(route["requests"], 40);
    assert_eq!(route["errors"], 0);
    assert!(route["p99_ms"].as_f64().unwrap() >= route["p50_ms"].as_f64().unwrap());
    let broken = stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "broken")
        .unwrap();
    assert_eq!(broken["error_rate"], 1.0);

    // A reload that fails: the page shows it with the error (the old config keeps serving).
    let path = gw.dir.path().join("gateway.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{good}\n[tracing]\nsample_ratio = 7.0\n")).unwrap();
    let reload = send(
        Request::post(gw.admin_url("/admin/reload"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reload.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The rendered page, with the token handed over in the URL fragment.
    let profile = tempfile::tempdir().unwrap();
    let url = format!("{}#token={TOKEN}", gw.admin_url("/status"));
    let dom = run_chromium(&url, profile.path(), "--dump-dom");
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the page never loaded /admin/stats:\n{dom}"
    );
    assert!(
        dom.contains(&stats["version"].as_str().unwrap().to_string()),
        "version shown"
    );
    let failed = dom
        .split("id=\"reload\"")
        .nth(1)
        .unwrap()
        .split("</span>")
        .next()
        .unwrap();
    assert!(failed.contains("last reload failed"), "{failed}");
    assert!(failed.contains("tracing.sample_ratio"), "{failed}");
    let app_row = row_cells(&dom, "routes", "app");
    let rate: f64 = app_row[2]
        .parse()
        .unwrap_or_else(|_| panic!("rate cell {app_row:?}"));
    assert!(rate > 0.0, "non-zero rate: {app_row:?}");
    assert_eq!(app_row[6], "40", "{app_row:?}");
    row_cells(&dom, "routes", "broken");
    let tight = row_cells(&dom, "rate_limits", "tight");
    assert_eq!(
        tight[1..],
        ["1", "1", "1"],
        "keys, admitted, refused: {tight:?}"
    );
    let app_ep = row_cells(&dom, "upstreams", "app");
    assert!(app_ep[2].starts_with("up"), "{app_ep:?}");
    let down_ep = row_cells(&dom, "upstreams", "down");
    assert_eq!(down_ep[1], dead.to_string());
    assert!(
        down_ep[2].starts_with("down"),
        "a down endpoint shows as down: {down_ep:?}"
    );

    // A screenshot beside the test's temp files (and, on request, for the docs).
    let shot = profile.path().join("status.png");
    run_chromium(
        &url,
        tempfile::tempdir().unwrap().path(),
        &format!("--screenshot={}", shot.display()),
    );
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert_eq!(&png[1..4], b"PNG");
    if std::env::var_os("PORTICO_UPDATE_STATUS_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status.png");
        std::fs::copy(&shot, docs).unwrap();
    }
    drop(browser);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_page_asks_for_one() {
    let app = Backend::echo("app").await;
    let gw = ChildGateway::start(
        &config(app.addr, dead_addr().await),
        &[("PORTICO_TEST_ADMIN_TOKEN", TOKEN)],
    );
    let profile = tempfile::tempdir().unwrap();
    let dom = run_chromium(&gw.admin_url("/status"), profile.path(), "--dump-dom");
    let login = dom
        .split("id=\"login\"")
        .nth(1)
        .unwrap_or_else(|| panic!("{dom}"));
    let tag_end = login.split('>').next().unwrap();
    assert!(
        !tag_end.contains("hidden"),
        "the token form shows: {tag_end}"
    );
    assert!(!dom.contains("data-loaded=\"true\""));
}
