//! CPU per compressed answer: a 20 KB JSON body through `[compression]` at each coding's
//! default level (the whole response path: eligibility, headers, the streaming encoder), and the
//! bytes each puts on the wire (printed once). Baseline: the same answer with no coding.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Response;
use http_body_util::BodyExt;
use portico::body::Body;
use portico::compress::{Algorithm, Compression, Levels, compile::default_types};

fn json_20k() -> String {
    let items: Vec<String> = (0..330)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"name\":\"item {i}\",\"status\":\"shipped\",\"price\":{}.{:02}}}",
                i * 7 % 100,
                i % 100
            )
        })
        .collect();
    format!("{{\"items\":[{}]}}", items.join(","))
}

fn answer(body: &str) -> Response<Body> {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::full(body.to_owned()))
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let body = json_20k();
    let compression = Compression {
        algorithms: [Algorithm::Zstd, Algorithm::Brotli, Algorithm::Gzip].into(),
        min_size: 1024,
        types: default_types(),
        levels: Levels::default(),
    };
    let run = |coding: Option<Algorithm>| {
        let resp = compression.apply(coding, answer(&body));
        rt.block_on(resp.into_body().collect()).unwrap().to_bytes()
    };
    println!("body: {} bytes", body.len());
    for a in [Algorithm::Zstd, Algorithm::Brotli, Algorithm::Gzip] {
        println!("{}: {} bytes on the wire", a.token(), run(Some(a)).len());
    }
    let mut g = c.benchmark_group("compress_20k_json");
    g.bench_function("identity", |b| b.iter(|| black_box(run(None))));
    for a in [Algorithm::Zstd, Algorithm::Brotli, Algorithm::Gzip] {
        g.bench_function(a.token(), |b| b.iter(|| black_box(run(Some(a)))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
