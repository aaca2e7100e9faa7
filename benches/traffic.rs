//! What a route's traffic actions add to the request path when configured: lookup + dispatch
//! (fault check, split side) for a plain route, a 95/5 split and a sticky split, and the
//! mirror's per-request decision at 10% (the copy itself is an upstream exchange, measured by
//! `load-tests/traffic`). Routes come from `runtime::load` on a generated config, as served.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method, Uri};
use portico::route::traffic::{Client, dispatch};

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
admin_listen = ""
[upstreams.v1]
endpoints = ["127.0.0.1:9"]
[upstreams.v2]
endpoints = ["127.0.0.1:10"]
[[routes]]
id = "plain"
match = { path_prefix = "/plain" }
upstream = "v1"
[[routes]]
id = "split"
match = { path_prefix = "/split" }
split = [{ upstream = "v1", weight = 95 }, { upstream = "v2", weight = 5 }]
[[routes]]
id = "sticky"
match = { path_prefix = "/sticky" }
split = [{ upstream = "v1", weight = 95 }, { upstream = "v2", weight = 5 }]
sticky = "header:x-user"
[[routes]]
id = "mirror"
match = { path_prefix = "/mirror" }
upstream = "v1"
mirror = { upstream = "v2", percent = 10 }
"#;

fn traffic(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = tokio.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, CONFIG).expect("write config");
    let rt = portico::runtime::load(&path, None).expect("config");
    let mut headers = HeaderMap::new();
    headers.insert("x-user", "user-4711".parse().unwrap());
    let client = Client {
        peer: [127, 0, 0, 1].into(),
        tls: false,
        trusted_proxies: &[],
        claims: None,
    };
    let mut group = c.benchmark_group("traffic");
    for name in ["plain", "split", "sticky"] {
        let uri: Uri = format!("/{name}/items/7").parse().unwrap();
        group.bench_function(format!("lookup+dispatch/{name}"), |b| {
            b.iter(|| {
                let route = rt
                    .routes
                    .find(None, &Method::GET, uri.path(), uri.query(), &headers)
                    .unwrap();
                let mut h = black_box(&headers).clone();
                let mut fault = None;
                let action = route.proxy().expect("a proxy route");
                let d = tokio.block_on(dispatch(route, action, client, &mut h, &mut fault));
                black_box(d.unwrap().upstream.name.len())
            })
        });
    }
    let route = rt
        .routes
        .find(None, &Method::GET, "/mirror", None, &headers)
        .unwrap();
    let mirror = route.mirror.as_deref().expect("mirror route");
    group.bench_function("mirror_roll_10pct", |b| {
        b.iter(|| black_box(mirror.chance.hit()))
    });
    group.finish();
}

criterion_group!(benches, traffic);
criterion_main!(benches);
