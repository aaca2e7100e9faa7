//! Response compression (`[compression]`): codings negotiated from Accept-Encoding, decoded by
//! curl and by the reference decoders; what is never compressed; streaming answers flushed as
//! they come; the route opt-out; config errors.

use crate::support;

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use support::*;

/// A 20 KB JSON answer, like a list endpoint's.
fn big_json() -> String {
    let items: Vec<String> = (0..400)
        .map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\",\"status\":\"shipped\"}}"))
        .collect();
    format!("{{\"items\":[{}]}}", items.join(","))
}

fn answer(content_type: &str, body: impl Into<Bytes>) -> Response<TestBody> {
    Response::builder()
        .header("content-type", content_type)
        .body(full(body))
        .unwrap()
}

/// `/big` JSON, `/small` JSON, `/png`, `/encoded` (already gzip), `/stream` (two chunks 300 ms
/// apart, no Content-Length).
async fn backend() -> Backend {
    Backend::start(|req: Request<hyper::body::Incoming>| async move {
        match req.uri().path() {
            "/app/small" => answer("application/json", "{\"ok\":true}"),
            "/app/png" => answer("image/png", vec![7u8; 4096]),
            "/app/encoded" => {
                let mut r = answer("application/json", vec![1u8; 4096]);
                r.headers_mut()
                    .insert("content-encoding", "gzip".parse().unwrap());
                r
            }
            "/app/stream" => {
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, _>>(2);
                tokio::spawn(async move {
                    let _ = tx
                        .send(Ok(Frame::data(Bytes::from("data: first\n\n"))))
                        .await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = tx
                        .send(Ok(Frame::data(Bytes::from("data: second\n\n"))))
                        .await;
                });
                let stream = tokio_stream_from(rx);
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(StreamBody::new(stream).boxed())
                    .unwrap()
            }
            _ => {
                let mut r = answer("application/json", big_json());
                r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
                r
            }
        }
    })
    .await
}

/// An mpsc receiver as a stream of frames.
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::convert::Infallible>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::convert::Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn start(backend: &Backend, compression: &str) -> TestGateway {
    let toml = support::config()
        .no_access_log()
        .upstream("app", &[backend.addr])
        .toml(compression)
        .route("app", "/app", "app")
        .route_with("plain", "/plain", "app", "compress = false")
        .build();
    TestGateway::start(&toml).await
}

const ALL: &str = "[compression]\n";

/// `curl --compressed` with an explicit Accept-Encoding: (headers, decoded body).
fn curl(url: &str, accept: &str) -> (String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "--compressed", "-D", "-", "-H"])
        .arg(format!("Accept-Encoding: {accept}"))
        .arg(url)
        .output()
        .expect("curl is installed (Debian: apt-get install curl)");
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = out.stdout;
    let split = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (
        String::from_utf8_lossy(&text[..split]).to_lowercase(),
        text[split..].to_vec(),
    )
}

fn decode(coding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::stream::decode_all(bytes).unwrap(),
        other => panic!("unexpected coding {other}"),
    }
    out
}

#[tokio::test]
async fn each_coding_is_decoded_by_curl_and_the_reference_decoders() {
    let backend = backend().await;
    let gw = start(&backend, ALL).await;
    let original = big_json();
    for coding in ["gzip", "br", "zstd"] {
        let url = gw.url("/app/list");
        // curl blocks: off the runtime thread the in-process gateway runs on.
        let (head, body) = tokio::task::spawn_blocking(move || curl(&url, coding))
            .await
            .unwrap();
        assert!(
            head.contains(&format!("content-encoding: {coding}")),
            "{head}"
        );
        assert!(head.contains("vary: accept-encoding"), "{head}");
        assert!(head.contains("etag: w/\"v1\""), "a weak ETag: {head}");
        assert!(!head.contains("content-length"), "{head}");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            original,
            "{coding} via curl"
        );

        let a = get_with(&gw.url("/app/list"), &[("accept-encoding", coding)]).await;
        assert_eq!(a.header("content-encoding"), Some(coding));
        let decoded = decode(coding, &a.body);
        assert_eq!(decoded, original.as_bytes(), "{coding}");
        assert!(
            a.body.len() * 5 < original.len(),
            "{coding}: {} bytes on the wire for {}",
            a.body.len(),
            original.len()
        );
    }
}

#[tokio::test]
async fn the_client_weights_decide_and_q_zero_refuses() {
    let backend = backend().await;
    let gw = start(&backend, ALL).await;
    let coding = |accept: &'static str| {
        let url = gw.url("/app/list");
        async move {
            get_with(&url, &[("accept-encoding", accept)])
                .await
                .header("content-encoding")
                .map(str::to_owned)
        }
    };
    assert_eq!(coding("gzip, br, zstd").await.as_deref(), Some("zstd"));
    assert_eq!(coding("zstd;q=0.5, br;q=0.9").await.as_deref(), Some("br"));
    assert_eq!(
        coding("zstd;q=0, br;q=0, gzip").await.as_deref(),
        Some("gzip")
    );
    assert_eq!(coding("gzip;q=0").await, None);
    assert_eq!(coding("identity").await, None);
    assert_eq!(coding("*;q=0").await, None);
    // No Accept-Encoding: plain, yet marked as varying for caches.
    let a = get(&gw.url("/app/list")).await;
    assert_eq!(a.header("content-encoding"), None);
    assert_eq!(a.header("vary"), Some("Accept-Encoding"));
    assert_eq!(a.body, big_json().as_bytes());
}

#[tokio::test]
async fn small_encoded_binary_head_and_opted_out_answers_go_as_they_are() {
    let backend = backend().await;
    let gw = start(&backend, ALL).await;
    let accept = [("accept-encoding", "gzip, br, zstd")];
    let small = get_with(&gw.url("/app/small"), &accept).await;
    assert_eq!(small.header("content-encoding"), None);
    assert_eq!(small.header("vary"), None);
    assert_eq!(small.body, "{\"ok\":true}".as_bytes());

    let png = get_with(&gw.url("/app/png"), &accept).await;
    assert_eq!(png.header("content-encoding"), None);
    assert_eq!(png.body.len(), 4096);

    let encoded = get_with(&gw.url("/app/encoded"), &accept).await;
    assert_eq!(encoded.header("content-encoding"), Some("gzip"));
    assert_eq!(encoded.body, vec![1u8; 4096], "not compressed twice");

    let plain = get_with(&gw.url("/plain/list"), &accept).await;
    assert_eq!(plain.header("content-encoding"), None, "compress = false");
    assert_eq!(plain.body, big_json().as_bytes());

    let head = send(
        Request::builder()
            .method(Method::HEAD)
            .uri(gw.url("/app/list"))
            .header("accept-encoding", "gzip")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(head.header("content-encoding"), None);
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn a_streamed_answer_reaches_the_client_as_it_comes() {
    let backend = backend().await;
    let gw = start(&backend, "[compression]\nalgorithms = [\"gzip\"]\n").await;
    let resp = h1_client()
        .request(
            Request::builder()
                .uri(gw.url("/app/stream"))
                .header("accept-encoding", "gzip")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let mut body = resp.into_body();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    // The first event must decode before the backend sends the second (300 ms later): the
    // encoder is flushed whenever the upstream has nothing ready.
    let first = tokio::time::timeout(Duration::from_millis(250), async {
        loop {
            let frame = body.frame().await.unwrap().unwrap();
            if let Ok(data) = frame.into_data() {
                std::io::Write::write_all(&mut decoder, &data).unwrap();
                std::io::Write::flush(&mut decoder).unwrap();
                if decoder.get_ref().ends_with(b"\n\n") {
                    return decoder.get_ref().clone();
                }
            }
        }
    })
    .await
    .expect("the first event arrives before the stream ends");
    assert_eq!(first, b"data: first\n\n");
    let rest = body.collect().await.unwrap().to_bytes();
    std::io::Write::write_all(&mut decoder, &rest).unwrap();
    let all = decoder.finish().unwrap();
    assert_eq!(all, b"data: first\n\ndata: second\n\n");
}

#[test]
fn bad_compression_settings_are_check_errors() {
    let toml = "[compression]\nalgorithms = [\"gzip\", \"deflate\", \"gzip\"]\nmin_size = \"lots\"\ntypes = [\"json\"]\nlevel = { gzip = 12 }\n";
    let (code, _, err) = check_config(toml, &[]);
    assert_eq!(code, 1, "{err}");
    assert_errors_at(
        &err,
        &[
            (
                "2:23",
                "compression.algorithms",
                "unknown coding \"deflate\"",
            ),
            ("2:34", "compression.algorithms", "listed twice"),
            ("3:12", "compression.min_size", ""),
            (
                "4:10",
                "compression.types",
                "bad media type pattern \"json\"",
            ),
            ("5:18", "compression.level.gzip", "between 1 and 9"),
        ],
    );
    let (code, _, err) = check_config("[compression]\nalgorithms = []\n", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("compression.algorithms: is empty"), "{err}");
}

#[tokio::test]
async fn a_bff_answer_is_compressed_too() {
    let backend = backend().await;
    let toml = support::config()
        .no_access_log()
        .upstream("app", &[backend.addr])
        .toml(ALL)
        .build();
    // The part's 20 KB list is shaped into the aggregate unchanged (no field selection).
    let bff = profile("/c")
        .endpoint("/home")
        .part("list", "app", "/app/list", "required = true")
        .build();
    let gw = TestGateway::start_with_files(&toml, &[("bff/c.toml", &bff)]).await;
    let plain = get(&gw.url("/c/home")).await;
    assert_eq!(plain.status, 200);
    assert!(plain.body.len() > 10_000, "{} bytes", plain.body.len());
    for coding in ["gzip", "br", "zstd"] {
        let a = get_with(&gw.url("/c/home"), &[("accept-encoding", coding)]).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-encoding"), Some(coding), "{coding}");
        assert!(
            a.header("vary")
                .is_some_and(|v| v.contains("accept-encoding") || v.contains("Accept-Encoding"))
        );
        assert_eq!(decode(coding, &a.body), plain.body, "{coding}");
        assert!(a.body.len() * 5 < plain.body.len(), "{coding}");
    }
}
