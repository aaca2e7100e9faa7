//! Reload cost (read + validate + compile + swap of a 1,000-route config) and the per-request
//! cost of recording metrics on the hot path.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, StatusCode};

// The tests' gateway.toml builder.
#[allow(dead_code)]
#[path = "../tests/support/config.rs"]
mod gateway_toml;

fn config(routes: usize) -> String {
    let base = gateway_toml::config()
        .admin_unset()
        .upstream("app", &["127.0.0.1:7001"]);
    (0..routes)
        .fold(base, |g, i| {
            g.toml(&format!(
                "[[routes]]\nid = \"r{i}\"\nmatch = {{ path_prefix = \"/api/r{i}\", methods = [\"GET\", \"POST\"] }}\nupstream = \"app\"\nstrip_prefix = \"/api\""
            ))
        })
        .build()
}

fn reload(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config(1000)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let gateway = portico::Gateway::new(path.clone(), portico::runtime::load(&path, None).unwrap());
    let _guard = rt.enter();
    c.bench_function("reload_1000_routes", |b| {
        b.iter(|| black_box(gateway.reload_by("bench").unwrap().generation))
    });
}

fn record(c: &mut Criterion) {
    let m = portico::metrics::Metrics::new();
    let route = m.route("users", Some("users"));
    let start = std::time::Instant::now() - Duration::from_micros(180);
    c.bench_function("metrics_record_per_request", |b| {
        b.iter(|| {
            let _in_flight = m.in_flight();
            route.record(
                black_box(&Method::GET),
                black_box(StatusCode::OK),
                black_box(start),
            );
        })
    });
}

criterion_group!(benches, reload, record);
criterion_main!(benches);
