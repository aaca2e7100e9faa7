//! An HTTP/1 connection quiet for a second gives its read buffer back and takes one again when
//! its next request arrives (src/server/h1.rs): the client sees
//! one keep-alive connection throughout, and nothing in flight is ever released.

use crate::support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than the release delay (1 s).
const PAST_RELEASE: Duration = Duration::from_millis(1500);

async fn gateway(limits: &str) -> (Backend, TestGateway) {
    let backend = Backend::start(|req| async move {
        if req.uri().path() != "/drip" {
            return Response::new(full(format!("ok {}", req.uri().path())));
        }
        // 5 chunks, 500 ms apart: the answer streams for 2 s, longer than the release delay.
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
        tokio::spawn(async move {
            for i in 0..5 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let chunk = Frame::data(Bytes::from(format!("chunk{i};")));
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        });
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Response::new(BodyExt::boxed(StreamBody::new(stream)))
    })
    .await;
    let cfg = config()
        .toml(&format!("[limits]\n{limits}"))
        .upstream("app", &[backend.addr])
        .route("all", "/", "app")
        .build();
    (backend, TestGateway::start(&cfg).await)
}

/// Sends `head` and reads one whole answer (content-length or chunked) from `s`.
async fn exchange(s: &mut TcpStream, head: &str) -> String {
    s.write_all(head.as_bytes()).await.unwrap();
    read_answer(s).await
}

/// Reads one answer: its head, then its content-length bytes or chunks up to the last one.
async fn read_answer(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let body = &text[end + 4..];
            let done = match head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
            {
                Some(n) => body.len() >= n.trim().parse::<usize>().unwrap(),
                None => body.ends_with("0\r\n\r\n"),
            };
            if done {
                return text;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

const GET_A: &str = "GET /a HTTP/1.1\r\nhost: x\r\n\r\n";
const GET_B: &str = "GET /b HTTP/1.1\r\nhost: x\r\n\r\n";

#[tokio::test]
async fn a_released_connection_serves_its_next_requests_then_closes_at_keepalive_timeout() {
    let (backend, gw) = gateway("keepalive_timeout = \"3s\"\nheader_read_timeout = \"10s\"").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    assert!(exchange(&mut s, GET_A).await.ends_with("ok /a"));
    tokio::time::sleep(PAST_RELEASE).await;
    // Released by now; the same socket carries the next request, and two pipelined ones.
    assert!(exchange(&mut s, GET_B).await.ends_with("ok /b"));
    tokio::time::sleep(PAST_RELEASE).await;
    s.write_all(format!("{GET_A}{GET_B}").as_bytes())
        .await
        .unwrap();
    let first = read_answer(&mut s).await;
    assert!(first.ends_with("ok /a"), "{first}");
    let second = read_answer(&mut s).await;
    assert!(second.ends_with("ok /b"), "{second}");
    assert_eq!(backend.hits(), 4);
    // Released again, and closed about keepalive_timeout after the last answer.
    let (rest, took) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_millis(4500),
        "closed {took:?} after the last answer"
    );
}

#[tokio::test]
async fn an_answer_streaming_past_the_release_delay_is_not_cut() {
    let (_backend, gw) = gateway("keepalive_timeout = \"30s\"").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let drip = exchange(&mut s, "GET /drip HTTP/1.1\r\nhost: x\r\n\r\n").await;
    for i in 0..5 {
        assert!(drip.contains(&format!("chunk{i};")), "{drip}");
    }
    // The connection is still whole afterwards.
    assert!(exchange(&mut s, GET_A).await.ends_with("ok /a"));
}

#[tokio::test]
async fn a_head_started_before_the_release_delay_is_kept_and_completed() {
    let (backend, gw) = gateway("keepalive_timeout = \"30s\"\nheader_read_timeout = \"5s\"").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    assert!(exchange(&mut s, GET_A).await.ends_with("ok /a"));
    // Half a head, then quiet past the release delay: the connection must keep those bytes.
    s.write_all(b"GET /b HTTP/1.1\r\nhost:").await.unwrap();
    tokio::time::sleep(PAST_RELEASE).await;
    s.write_all(b" x\r\n\r\n").await.unwrap();
    let b = read_answer(&mut s).await;
    assert!(b.ends_with("ok /b"), "{b}");
    assert_eq!(backend.hits(), 2);
}

#[tokio::test]
async fn a_drain_closes_a_released_connection() {
    let (_backend, mut gw) = gateway("keepalive_timeout = \"30s\"").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    assert!(exchange(&mut s, GET_A).await.ends_with("ok /a"));
    tokio::time::sleep(PAST_RELEASE).await;
    let started = Instant::now();
    let shutdown = tokio::spawn(gw.running.take().unwrap().shutdown());
    let (rest, _) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
    assert!(shutdown.await.unwrap(), "the drain did not finish cleanly");
}

/// A request body still unread when the exchange ended (the backend answered before reading
/// it): its rest, sent after the release delay, must not be read as a new request (a desync
/// behind a shared front connection). A body nobody reads to its end closes the connection
/// after the answer unless its rest is already buffered (src/server/h1.rs).
#[tokio::test]
async fn the_rest_of_a_body_still_being_read_is_never_read_as_a_request() {
    let (backend, gw) = gateway("keepalive_timeout = \"30s\"").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let smuggled = "GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n";
    let body = format!("{:<64}{smuggled}", "x");
    let head = format!(
        "POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body.as_bytes()[..8]).await.unwrap();
    // The backend answers without reading the body; the gateway relays that answer.
    let answer = read_answer(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tokio::time::sleep(PAST_RELEASE).await;
    let _ = s.write_all(&body.as_bytes()[8..]).await;
    let (rest, _) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.contains("ok /smuggled"), "{rest}");
    assert_eq!(
        backend.hits(),
        1,
        "the body's rest reached the backend as a request"
    );
}
