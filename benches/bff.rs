//! BFF cost benchmarks.
//!
//! `gateway_cpu/*` measures the CPU time the gateway's own thread spends per request (read
//! from `/proc/self/task/TID/schedstat`, so the client and the backends, which run on other
//! threads, are not counted): a plain proxied request versus BFF endpoints fanning out to
//! three backends with ~1 KB JSON parts. The target is `bff_3way` <= 2.5x `plain`.
//! The other groups time the BFF-specific CPU work in isolation.
//!
//! Run: `cargo bench --bench bff` (or `-- gateway_cpu` for the ratio alone).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

// The tests' gateway.toml and BFF profile builders.
#[allow(dead_code)]
#[path = "../tests/support/config.rs"]
mod gateway_toml;
#[allow(dead_code)]
#[path = "../tests/support/profile.rs"]
mod profile;

/// A ~1 KB JSON answer, like a user profile or a short list.
fn part_json(kind: &str) -> Value {
    let items: Vec<Value> = (0..5)
        .map(|i| {
            json!({"id": format!("{kind}-{i}"), "status": "shipped", "total": 12.5 + i as f64,
                   "currency": "EUR", "placed_at": "2026-11-01T09:30:00Z"})
        })
        .collect();
    json!({"id": "42", "name": "Ada Lovelace", "email": "ada@example.com", "segment": "gold",
           "avatar_url": "https://cdn.example.com/avatars/42.png", "locale": "en-GB",
           "address": {"city": "London", "country": "GB"}, "items": items, "total_count": 5})
}

/// Serves `body` (JSON) on every request, on the current runtime.
async fn fixed_backend(body: Bytes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        let mut r = hyper::Response::new(Full::new(body));
                        r.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// The bench profile: `/home` fans out to three backends and shapes their answers, `/whole`
/// passes three answers through unshaped, `/chain` calls them one after the other.
fn bench_profile() -> String {
    let ids = "fields = [\"items[].id\", \"items[].status\"]";
    profile::profile("/b")
        .keys("name = \"bench\"\ndeadline = \"2s\"")
        .endpoint("/home")
        .part(
            "profile",
            "users",
            "/users/{query.user}",
            "required = true\nfields = [\"id\", \"name\", \"avatar_url\", \"segment\"]",
        )
        .part(
            "orders",
            "orders",
            "/orders?user={query.user}",
            &format!("{ids}\nmax_items = 5"),
        )
        .part(
            "recommendations",
            "catalog",
            "/recommendations?segment=gold",
            "fields = [\"items[].id\", \"items[].total\"]",
        )
        .endpoint("/whole")
        .part("a", "users", "/a", "")
        .part("b", "orders", "/b", "")
        .part("c", "catalog", "/c", "")
        .endpoint("/chain")
        .part(
            "profile",
            "users",
            "/users/{query.user}",
            "required = true\nfields = [\"id\", \"name\", \"segment\"]",
        )
        .part("orders", "orders", "/orders?user={profile.id}", ids)
        .part(
            "recommendations",
            "catalog",
            "/recommendations?segment={profile.segment}",
            "fields = [\"items[].id\"]",
        )
        .build()
}

fn write_config(dir: &Path, backends: &[SocketAddr; 3]) {
    let gateway = ["users", "orders", "catalog"]
        .iter()
        .zip(backends)
        .fold(gateway_toml::config().no_access_log(), |g, (name, addr)| {
            g.upstream(name, &[addr])
        })
        .route("plain", "/plain", "users")
        .build();
    std::fs::write(dir.join("gateway.toml"), gateway).unwrap();
    std::fs::create_dir_all(dir.join("bff")).unwrap();
    std::fs::write(dir.join("bff/bench.toml"), bench_profile()).unwrap();
}

/// Nanoseconds thread `tid` of this process has run on a CPU.
fn thread_cpu_ns(tid: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// The gateway on its own single-threaded runtime and OS thread; returns its address and
/// thread id, and a sender that stops it.
fn start_gateway(config: &Path) -> (SocketAddr, String, tokio::sync::oneshot::Sender<()>) {
    let (tx, rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let config = config.to_path_buf();
    let gateway_thread = std::thread::Builder::new().name("gateway".into());
    let _ = gateway_thread.spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let running = portico::Running::start(&config).await.unwrap();
            let tid = std::fs::read_link("/proc/thread-self").unwrap();
            let tid = tid.file_name().unwrap().to_string_lossy().into_owned();
            tx.send((running.http_addr(), tid)).unwrap();
            let _ = stop_rx.await;
            running.shutdown().await;
        });
    });
    let (addr, tid) = rx.recv().unwrap();
    (addr, tid, stop_tx)
}

fn gateway_cpu(c: &mut Criterion) {
    let backends_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let body = Bytes::from(serde_json::to_vec(&part_json("o")).unwrap());
    assert!(
        body.len() <= 1024,
        "parts must be <= 1 KB, got {}",
        body.len()
    );
    let backends = backends_rt.block_on(async {
        [
            fixed_backend(body.clone()).await,
            fixed_backend(body.clone()).await,
            fixed_backend(body.clone()).await,
        ]
    });
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &backends);
    let (addr, tid, stop) = start_gateway(&dir.path().join("gateway.toml"));

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let fetch = |path: &str| {
        let uri: hyper::Uri = format!("http://{addr}{path}").parse().unwrap();
        let client = &client;
        async move {
            let resp = client
                .request(hyper::Request::get(uri).body(Full::default()).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.into_body().collect().await.unwrap().to_bytes().len()
        }
    };
    let mut g = c.benchmark_group("gateway_cpu");
    g.sample_size(30).measurement_time(Duration::from_secs(6));
    for (name, path) in [
        ("plain", "/plain/users/42"),
        ("bff_3way", "/b/home?user=42"),
        ("bff_3way_unshaped", "/b/whole"),
        ("bff_chain", "/b/chain?user=42"),
    ] {
        client_rt.block_on(fetch(path));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let before = thread_cpu_ns(&tid);
                for _ in 0..iters {
                    client_rt.block_on(fetch(path));
                }
                Duration::from_nanos(thread_cpu_ns(&tid) - before)
            })
        });
    }
    g.finish();
    let _ = stop.send(());
}

fn bff_work(c: &mut Criterion) {
    let value = part_json("o");
    let bytes = serde_json::to_vec(&value).unwrap();
    let shape = portico::bff::shape::Shape::new(
        Some(&["id", "name", "avatar_url", "items[].id", "items[].status"]),
        Some(5),
        &[("avatar_url", "avatar")],
    )
    .unwrap();
    let mut g = c.benchmark_group("bff_work");
    g.bench_function("parse_1kb", |b| {
        b.iter(|| serde_json::from_slice::<Value>(std::hint::black_box(&bytes)).unwrap())
    });
    g.bench_function("parse_1kb_projected", |b| {
        b.iter(|| shape.parse(std::hint::black_box(&bytes)).unwrap())
    });
    g.bench_function("shape_1kb", |b| {
        b.iter_batched(|| value.clone(), |v| shape.apply(v), BatchSize::SmallInput)
    });
    // What a part's answer costs now: shaped while parsing, straight into its JSON text
    // (compare with parse_1kb_projected + shape_1kb + serializing the shaped tree).
    g.bench_function("parse_and_shape_1kb_as_text", |b| {
        b.iter(|| shape.parse_answer(std::hint::black_box(&bytes)).unwrap())
    });
    g.bench_function("parse_shape_serialize_1kb_as_tree", |b| {
        b.iter(|| {
            let shaped = shape.apply(shape.parse(std::hint::black_box(&bytes)).unwrap());
            serde_json::to_vec(&shaped).unwrap()
        })
    });

    let scope_parts = ["profile"];
    let scope = portico::bff::template::Scope {
        captures: &[],
        parts: &scope_parts,
    };
    let t = portico::bff::template::Template::parse(
        "/recommendations?segment={profile.segment}&user={claims.sub}",
        portico::bff::template::Kind::Path,
        &scope,
    )
    .unwrap();
    let claims = json!({"sub": "user 42"}).as_object().unwrap().clone();
    let headers = http::HeaderMap::new();
    let parts = [Some(value.clone())];
    let inputs = portico::bff::template::Inputs {
        claims: Some(&claims),
        path: "/home",
        captures: &[],
        query: None,
        headers: &headers,
        body: None,
        parts: &parts,
    };
    g.bench_function("render_path", |b| {
        b.iter(|| t.render(std::hint::black_box(&inputs)).unwrap())
    });

    // Assembling an answer from three parsed parts (shaping, JSON writing, headers).
    let dir = tempfile::tempdir().unwrap();
    let dead: SocketAddr = "127.0.0.1:9".parse().unwrap();
    write_config(dir.path(), &[dead, dead, dead]);
    let rt = portico::runtime::load(&dir.path().join("gateway.toml"), None).unwrap();
    let ep = &rt.bff.profile("bench").unwrap().endpoints[0];
    g.bench_function("respond_3x1kb", |b| {
        b.iter_batched(
            || portico::bff::fanout::Run {
                values: vec![
                    Some(value.clone()),
                    Some(value.clone()),
                    Some(value.clone()),
                ],
                texts: vec![None, None, None],
                failures: vec![None, None, None],
                took: vec![Some(Duration::from_micros(300)); 3],
                origins: vec![portico::bff::call::Origin::Backend; 3],
            },
            |run| portico::bff::respond::respond(ep, run, Duration::from_micros(400)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    // The same parts shaped while parsing (how they arrive now): only their texts are joined.
    let texts: Vec<_> = ep
        .parts
        .iter()
        .map(|p| match p.shape.parse_answer(&bytes).unwrap() {
            portico::bff::shape::Answer::Text { text, .. } => Some(text),
            portico::bff::shape::Answer::Tree(_) => None,
        })
        .collect();
    g.bench_function("respond_3x1kb_text", |b| {
        b.iter_batched(
            || portico::bff::fanout::Run {
                values: vec![Some(Value::Null); 3],
                texts: texts.clone(),
                failures: vec![None, None, None],
                took: vec![Some(Duration::from_micros(300)); 3],
                origins: vec![portico::bff::call::Origin::Backend; 3],
            },
            |run| portico::bff::respond::respond(ep, run, Duration::from_micros(400)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, gateway_cpu, bff_work);
criterion_main!(benches);
