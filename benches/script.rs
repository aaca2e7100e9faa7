//! Per-call cost of a script's `on_request` on this thread's VM: a one-line header set, a hook
//! that reads a header and the claims, and the phase with no scripts configured (the baseline a
//! route without `scripts` pays). Each iteration is one request's whole script phase: session,
//! `req`/`ctx` objects, the call within its budget, the head moved back, metrics.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request};
use portico::script::{self, RequestInfo};

const GATEWAY: &str = r#"
[server]
listen = "127.0.0.1:0"
[upstreams.app]
endpoints = ["127.0.0.1:9"]
[scripts.set]
file = "set.lua"
[scripts.read]
file = "read.lua"
[[routes]]
id = "set"
match = { path_prefix = "/set" }
upstream = "app"
scripts = ["set"]
[[routes]]
id = "read"
match = { path_prefix = "/read" }
upstream = "app"
scripts = ["read"]
[[routes]]
id = "plain"
match = { path_prefix = "/plain" }
upstream = "app"
"#;

const SET: &str = "function on_request(req, ctx)\n  req:set_header(\"x-script\", \"1\")\nend\n";
const READ: &str = r#"
function on_request(req, ctx)
  local t = req:header("x-tenant")
  if t ~= ctx.claims.tenant then
    return { status = 403 }
  end
  ctx.vars.tenant = t
end
"#;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("gateway.toml", GATEWAY),
        ("set.lua", SET),
        ("read.lua", READ),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let rt = portico::runtime::load(&dir.path().join("gateway.toml"), None).unwrap();
    let route = |id: &str| {
        rt.routes
            .routes()
            .iter()
            .find(|r| &*r.id == id)
            .unwrap()
            .clone()
    };
    let (set, read, plain) = (route("set"), route("read"), route("plain"));
    let request_id = HeaderValue::from_static("0123456789abcdef-000000000001");
    let claims: portico::filter::Claims = std::sync::Arc::new(
        serde_json::json!({"sub": "u1", "tenant": "acme"})
            .as_object()
            .unwrap()
            .clone(),
    );
    let id: Option<std::sync::Arc<str>> = Some(std::sync::Arc::from("set"));
    let parts = || {
        Request::get("/set/items?page=2")
            .header("host", "api.example.com")
            .header("user-agent", "bench")
            .header("accept", "*/*")
            .header("x-tenant", "acme")
            .body(())
            .unwrap()
            .into_parts()
            .0
    };
    let mut g = c.benchmark_group("on_request");
    for (name, r, with_claims) in [
        ("header_set", &set, false),
        ("read_header_and_claims", &read, true),
        ("no_scripts", &plain, false),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                parts,
                |p| {
                    let info = || {
                        RequestInfo::new(
                            &id,
                            &request_id,
                            [127, 0, 0, 1].into(),
                            with_claims.then_some(&claims),
                        )
                    };
                    let up = r.upstream().map(|u| (u, &rt.upstreams));
                    match script::begin(r.scripts.as_ref(), info, p, up).unwrap() {
                        script::Begin::Go(s, picked) => black_box((s.is_some(), picked.is_none())),
                        script::Begin::Respond(_) => panic!("answered"),
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
