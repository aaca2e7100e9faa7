//! HTTP/2 upstreams and gRPC awareness: `protocol = "h2"` multiplexes many requests on few
//! upstream connections and passes trailers through; gateway errors for gRPC requests are
//! trailers-only answers; `grpc-timeout` bounds the call.

use crate::support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::net::TcpListener;

/// An HTTP/2-only (h2c) backend that counts accepted connections; each request waits
/// `delay`, then answers `version` in the body and `grpc-status: 0` in the trailers.
struct H2Backend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for H2Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Reply = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn h2_backend(delay: Duration) -> H2Backend {
    h2_backend_with(delay, None).await
}

/// Like [`h2_backend`], announcing `max_streams` as its SETTINGS_MAX_CONCURRENT_STREAMS.
async fn h2_backend_with(delay: Duration, max_streams: Option<u32>) -> H2Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    let version = format!("{:?}", req.version());
                    let timeout = req
                        .headers()
                        .get("grpc-timeout")
                        .map(|v| v.to_str().unwrap().to_owned());
                    // `/…Stream…` calls answer at once and send their trailers after `delay`.
                    let streaming = req.uri().path().contains("Stream");
                    let _ = req.into_body().collect().await;
                    if !streaming {
                        tokio::time::sleep(delay).await;
                    }
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    let first = futures_util::stream::iter([Ok(Frame::data(Bytes::from(version)))]);
                    let last = futures_util::stream::once(async move {
                        if streaming {
                            tokio::time::sleep(delay).await;
                        }
                        Ok::<_, Infallible>(Frame::trailers(trailers))
                    });
                    let body: Reply = BodyExt::boxed(StreamBody::new(
                        futures_util::StreamExt::chain(first, last),
                    ));
                    let mut resp = Response::new(body);
                    resp.headers_mut()
                        .insert("content-type", "application/grpc".parse().unwrap());
                    if let Some(t) = timeout {
                        resp.headers_mut()
                            .insert("x-seen-grpc-timeout", t.parse().unwrap());
                    }
                    Ok::<_, Infallible>(resp)
                });
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder.max_concurrent_streams(max_streams);
                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    H2Backend {
        addr,
        connections,
        task,
    }
}

/// A gRPC-shaped request (POST, `content-type: application/grpc`, `te: trailers`).
fn grpc_request(url: &str, extra: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::post(url)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap()
}

/// Sends over h2c and reads status, head, body and trailers.
async fn h2_call(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    req: Request<Full<Bytes>>,
) -> (http::response::Parts, Bytes, Option<HeaderMap>) {
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.expect("body");
    let trailers = collected.trailers().cloned();
    (parts, collected.to_bytes(), trailers)
}

fn gateway_toml(upstream: &str, extra: &str) -> String {
    config()
        .no_access_log()
        .upstream_with(
            "grpc",
            &[upstream],
            &format!("protocol = \"h2\"\ntimeout = \"5s\"\n{extra}"),
        )
        .route("grpc", "/", "grpc")
        .build()
}

#[tokio::test]
async fn h2_upstream_multiplexes_and_passes_trailers() {
    let backend = h2_backend(Duration::from_millis(100)).await;
    let gw = TestGateway::start(&gateway_toml(&backend.addr.to_string(), "")).await;
    let client = h2c_client();
    let calls = (0..100).map(|i| {
        let client = client.clone();
        let url = gw.url(&format!("/svc.Echo/Call{i}"));
        async move { h2_call(&client, grpc_request(&url, &[])).await }
    });
    let answers = futures_util::future::join_all(calls).await;
    for (parts, body, trailers) in &answers {
        assert_eq!(parts.status, 200);
        assert_eq!(parts.version, Version::HTTP_2);
        assert_eq!(&body[..], b"HTTP/2.0", "the upstream leg speaks HTTP/2");
        let trailers = trailers.as_ref().expect("trailers passed through");
        assert_eq!(trailers["grpc-status"], "0");
    }
    let conns = backend.connections.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&conns),
        "100 concurrent requests used {conns} upstream connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_past_max_concurrent_streams_open_more_connections() {
    let backend = h2_backend_with(Duration::from_millis(300), Some(10)).await;
    let toml = gateway_toml(&backend.addr.to_string(), "max_concurrent_streams = 10");
    let gw = TestGateway::start(&toml).await;
    let client = h2c_client();
    let calls = (0..30).map(|i| {
        let client = client.clone();
        let url = gw.url(&format!("/svc.Echo/Slow{i}"));
        async move { h2_call(&client, grpc_request(&url, &[])).await }
    });
    let answers = futures_util::future::join_all(calls).await;
    for (parts, body, _) in &answers {
        assert_eq!(parts.status, 200);
        assert_eq!(&body[..], b"HTTP/2.0");
    }
    let conns = backend.connections.load(Ordering::SeqCst);
    assert!(
        (3..=4).contains(&conns),
        "30 concurrent requests at 10 streams per connection used {conns} connections"
    );
}

#[tokio::test]
async fn grpc_dead_upstream_is_unavailable_on_http_200() {
    let dead = dead_addr().await;
    let gw = TestGateway::start(&gateway_toml(&dead.to_string(), "")).await;
    let (parts, body, _) = h2_call(&h2c_client(), grpc_request(&gw.url("/svc.A/B"), &[])).await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["grpc-status"], "14");
    assert!(parts.headers.contains_key("grpc-message"));
    assert_eq!(parts.headers["content-type"], "application/grpc");
    assert!(body.is_empty(), "trailers-only: no body");
}

#[tokio::test]
async fn grpc_unknown_path_is_unimplemented() {
    let gw = TestGateway::start(
        &config()
            .no_access_log()
            .upstream("u", &["127.0.0.1:1"])
            .route("only", "/only", "u")
            .build(),
    )
    .await;
    let (parts, _, _) = h2_call(&h2c_client(), grpc_request(&gw.url("/svc.A/B"), &[])).await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["grpc-status"], "12");
    // A plain request still gets problem+json.
    let plain = get(&gw.url("/svc.A/B")).await;
    assert_eq!(plain.status, 404);
    assert_eq!(
        plain.header("content-type"),
        Some("application/problem+json")
    );
}

#[tokio::test]
async fn grpc_without_token_is_unauthenticated() {
    let backend = h2_backend(Duration::ZERO).await;
    let toml = config()
        .no_access_log()
        .upstream_with("grpc", &[backend.addr], "protocol = \"h2\"")
        .provider(
            "hs",
            "https://issuer.test",
            &["HS256"],
            "secret_file = \"hs.secret\"",
        )
        .route_with("grpc", "/", "grpc", "auth = { provider = \"hs\" }")
        .build();
    let secret = "0123456789abcdef0123456789abcdef-test-secret";
    let gw = TestGateway::start_with_files(&toml, &[("hs.secret", secret)]).await;
    let (parts, _, _) = h2_call(&h2c_client(), grpc_request(&gw.url("/svc.A/B"), &[])).await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["grpc-status"], "16");
    assert_eq!(backend.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn grpc_timeout_bounds_the_call_and_is_forwarded() {
    let backend = h2_backend(Duration::from_secs(3)).await;
    let gw = TestGateway::start(&gateway_toml(&backend.addr.to_string(), "")).await;
    let client = h2c_client();
    let started = Instant::now();
    let (parts, _, _) = h2_call(
        &client,
        grpc_request(&gw.url("/svc.Slow/Call"), &[("grpc-timeout", "100m")]),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["grpc-status"], "4");
    // ~100 ms on an idle box; generous for a loaded CI machine, far below the 3 s answer.
    assert!(took < Duration::from_millis(1000), "took {took:?}");

    // A stream whose head came in time is still cut at the deadline, with status 4 in its
    // trailers (the head alone does not end the call).
    let started = Instant::now();
    let (parts, body, trailers) = h2_call(
        &client,
        grpc_request(&gw.url("/svc.Slow/Stream"), &[("grpc-timeout", "200m")]),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(parts.status, 200);
    assert!(parts.headers.get("grpc-status").is_none(), "{parts:?}");
    assert_eq!(
        body, "HTTP/2.0",
        "the data sent before the deadline arrives"
    );
    let trailers = trailers.expect("trailers end the cut stream");
    assert_eq!(trailers["grpc-status"], "4");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(took >= Duration::from_millis(190), "took {took:?}");

    let fast = h2_backend(Duration::ZERO).await;
    let gw = TestGateway::start(&gateway_toml(&fast.addr.to_string(), "")).await;
    let (parts, _, _) = h2_call(
        &client,
        grpc_request(&gw.url("/svc.Fast/Call"), &[("grpc-timeout", "2S")]),
    )
    .await;
    let seen = parts.headers["x-seen-grpc-timeout"].to_str().unwrap();
    let micros: u64 = seen.trim_end_matches('u').parse().unwrap();
    assert!(
        (1_000_000..=2_000_000).contains(&micros),
        "time left forwarded: {seen}"
    );
}

#[test]
fn unknown_protocol_is_a_check_error() {
    let toml = config()
        .upstream_with("u", &["127.0.0.1:1"], "protocol = \"h3\"")
        .route("r", "/", "u")
        .build();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), &toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["check", "--config"])
        .arg(dir.path().join("gateway.toml"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("upstreams.u.protocol"), "{text}");
    assert!(text.contains("h3"), "{text}");
}
