//! Route lookup cost at 10 / 1,000 / 10,000 routes (it should stay flat), and the cost of
//! compiling a 1,000-route config (a reload's main work; target < 50 ms).
//!
//! Tables are built through the public config API (`config::load`) from generated TOML, so
//! the bench measures the same indexes the gateway serves from.

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method};
use portico::runtime::Runtime;

/// A config with `n` routes: prefixes two and three segments deep, every 4th route exact,
/// every 8th route on its own host, all on one upstream.
fn config_text(n: usize) -> String {
    let mut s = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"\"\n\
         [upstreams.svc]\nendpoints = [\"127.0.0.1:9\"]\n",
    );
    for i in 0..n {
        let (kind, path) = if i % 4 == 0 {
            ("path", format!("/api/svc{i}/items/list"))
        } else if i % 2 == 0 {
            ("path_prefix", format!("/api/svc{i}/v1"))
        } else {
            ("path_prefix", format!("/api/svc{i}"))
        };
        let host = if i % 8 == 0 {
            format!(", host = \"h{i}.example.com\"")
        } else {
            String::new()
        };
        s.push_str(&format!(
            "[[routes]]\nid = \"r{i}\"\nmatch = {{ {kind} = \"{path}\", methods = [\"GET\", \"POST\"]{host} }}\nupstream = \"svc\"\n"
        ));
    }
    s
}

fn load(dir: &Path, n: usize) -> Runtime {
    let path = dir.join(format!("gateway-{n}.toml"));
    std::fs::write(&path, config_text(n)).expect("write config");
    portico::runtime::load(&path, None).unwrap_or_else(|e| panic!("config with {n} routes: {e}"))
}

fn lookup(c: &mut Criterion) {
    // Upstream clients are built with a tokio timer; give them a runtime to live in.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = tokio.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    let headers = HeaderMap::new();
    let mut group = c.benchmark_group("route_lookup");
    for n in [10usize, 1_000, 10_000] {
        let rt = load(dir.path(), n);
        let last = n - 1;
        // A prefix route near the end of the file, a request deeper than the prefix.
        let deep = format!("/api/svc{last}/orders/42/lines");
        // A multiple of 4 that is not a multiple of 8: exact and without a host.
        let exact = format!("/api/svc{}/items/list", (n / 2) / 8 * 8 + 4);
        let hosted = format!("h{}.example.com", (n / 2) / 8 * 8);
        let cases: [(&str, Option<&str>, &str); 4] = [
            ("prefix_deep", None, &deep),
            ("exact", None, &exact),
            ("host_then_any", Some(&hosted), &deep),
            ("miss_404", None, "/nothing/here/at/all"),
        ];
        for (name, host, path) in cases {
            let expect_hit = name != "miss_404";
            assert_eq!(
                rt.routes.find(host, &Method::GET, path, &headers).is_ok(),
                expect_hit,
                "{name} at {n} routes"
            );
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let r = rt.routes.find(
                        black_box(host),
                        black_box(&Method::GET),
                        black_box(path),
                        black_box(&headers),
                    );
                    black_box(r.is_ok())
                })
            });
        }
    }
    group.finish();
}

fn compile(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = tokio.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config_text(1_000)).expect("write config");
    let mut group = c.benchmark_group("config_load");
    group.sample_size(20);
    group.bench_function("routes_1000", |b| {
        b.iter(|| black_box(portico::runtime::load(&path, None).expect("valid config")))
    });
    group.finish();
}

criterion_group!(benches, lookup, compile);
criterion_main!(benches);
