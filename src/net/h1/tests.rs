//! The client against raw TCP servers: keep-alive reuse through the idle list, a kept
//! connection the server closed, the request given back after a close race, idle expiry.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::body::RequestBody;
use crate::net::added::Extra;
use crate::net::stream::Stream;

/// A server that answers each request head on a connection with the next of `answers`
/// (`None`: close instead), then keeps reading; it returns the heads it saw.
async fn server(
    answers: Vec<Option<&'static str>>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        for answer in answers {
            let head = loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head: Vec<u8> = buf.drain(..end + 4).collect();
                    break String::from_utf8(head).unwrap();
                }
                let mut chunk = [0u8; 4096];
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return seen;
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            seen.push(head);
            match answer {
                Some(a) => sock.write_all(a.as_bytes()).await.unwrap(),
                None => return seen,
            }
        }
        seen
    });
    (addr, task)
}

async fn conn(addr: std::net::SocketAddr, home: &Arc<IdleList>) -> Box<Conn> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    Conn::new(Stream::Plain(tcp), home, None)
}

fn get(path: &str) -> Request<RequestBody> {
    let mut r = Request::new(RequestBody::empty());
    *r.uri_mut() = path.parse().unwrap();
    r.headers_mut()
        .insert(http::header::HOST, "up".parse().unwrap());
    r
}

/// `GET /` on a new connection to `addr` that returns to `home`, answered.
async fn get_on_new(
    addr: std::net::SocketAddr,
    home: &Arc<IdleList>,
) -> http::Response<ResponseBody> {
    send(conn(addr, home).await, &mut get("/"), Extra::NONE)
        .await
        .expect("an answer")
}

async fn body_of(resp: http::Response<ResponseBody>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn a_connection_read_to_its_end_is_reused() {
    let ok = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
    let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let (addr, server) = server(vec![Some(ok), Some(chunked), Some(ok)]).await;
    let home = IdleList::new(4, Duration::from_secs(60));
    let first = conn(addr, &home).await;
    assert!(!first.reused);
    let resp = send(first, &mut get("/a"), Extra::NONE)
        .await
        .expect("an answer");
    assert_eq!(body_of(resp).await, "hello");
    assert_eq!(home.len(), 1, "back in the idle list at the body's end");
    let again = home.checkout().expect("the kept connection");
    assert!(again.reused);
    let resp = send(again, &mut get("/b"), Extra::NONE)
        .await
        .expect("an answer");
    assert_eq!(body_of(resp).await, "abc");
    let mut post = get("/c");
    *post.method_mut() = Method::POST;
    *post.body_mut() = RequestBody::full(Bytes::from_static(b"xyz"));
    let resp = send(home.checkout().unwrap(), &mut post, Extra::NONE)
        .await
        .expect("an answer");
    assert_eq!(body_of(resp).await, "hello");
    let seen = server.await.unwrap();
    assert_eq!(seen.len(), 3, "three exchanges on one connection");
    assert!(
        seen[0].starts_with("GET /a HTTP/1.1\r\nhost: up\r\n"),
        "{}",
        seen[0]
    );
    assert!(seen[2].contains("content-length: 3\r\n"), "{}", seen[2]);
}

#[tokio::test]
async fn a_body_dropped_early_closes_its_connection() {
    let big = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello";
    // (A second answer keeps the server reading: it ends when the connection closes.)
    let (addr, server) = server(vec![Some(big), None]).await;
    let home = IdleList::new(4, Duration::from_secs(60));
    drop(get_on_new(addr, &home).await);
    assert_eq!(home.len(), 0, "not kept");
    let seen = tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .expect("the connection was closed")
        .unwrap();
    assert_eq!(seen.len(), 1);
}

#[tokio::test]
async fn a_kept_connection_the_server_closed_is_not_checked_out() {
    let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let (addr, server) = server(vec![Some(ok)]).await;
    let home = IdleList::new(4, Duration::from_secs(60));
    let resp = get_on_new(addr, &home).await;
    assert_eq!(body_of(resp).await, "ok");
    assert_eq!(home.len(), 1);
    // The server task ends after its one answer, closing the socket.
    server.await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        home.checkout().is_none(),
        "a closed connection was handed out"
    );
}

#[tokio::test]
async fn a_close_race_gives_an_idempotent_request_back() {
    let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    for (method, back) in [(Method::GET, true), (Method::POST, false)] {
        // Answers once, then reads the next request and closes without a word.
        let (addr, _server) = server(vec![Some(ok), None]).await;
        let home = IdleList::new(4, Duration::from_secs(60));
        let resp = get_on_new(addr, &home).await;
        assert_eq!(body_of(resp).await, "ok");
        let kept = home.checkout().unwrap();
        let mut req = get("/again");
        *req.method_mut() = method.clone();
        *req.body_mut() = RequestBody::full(Bytes::from_static(b"body"));
        let Err(failure) = send(kept, &mut req, Extra::NONE).await else {
            panic!("{method}: answered");
        };
        assert_eq!(failure.again, back, "{method}: {}", failure.error);
    }
}

#[tokio::test]
async fn idle_connections_close_after_the_timeout() {
    let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let (addr, server) = server(vec![Some(ok), Some(ok)]).await;
    let home = IdleList::new(4, Duration::from_millis(100));
    let resp = get_on_new(addr, &home).await;
    assert_eq!(body_of(resp).await, "ok");
    assert_eq!(home.len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(home.len(), 0, "the reaper closed it");
    // The server saw the connection end without a second request.
    let seen = tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.len(), 1);
}

#[tokio::test]
async fn the_idle_list_keeps_at_most_max() {
    let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let home = IdleList::new(1, Duration::from_secs(60));
    let mut servers = Vec::new();
    let mut resps = Vec::new();
    for _ in 0..2 {
        let (addr, s) = server(vec![Some(ok)]).await;
        servers.push(s);
        resps.push(get_on_new(addr, &home).await);
    }
    for r in resps {
        assert_eq!(body_of(r).await, "ok");
    }
    assert_eq!(home.len(), 1);
}

#[tokio::test]
async fn a_buffer_grown_by_a_long_body_is_let_go_when_idle() {
    static BIG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let big = BIG.get_or_init(|| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n{}",
            "x".repeat(1_000_000)
        )
    });
    // (A second answer keeps the server reading, so the connection stays open.)
    let (addr, _server) = server(vec![Some(big.as_str()), None]).await;
    let home = IdleList::new(4, Duration::from_secs(60));
    let resp = get_on_new(addr, &home).await;
    assert_eq!(body_of(resp).await.len(), 1_000_000);
    let kept = home.checkout().expect("kept after the body");
    assert!(
        kept.rbuf.capacity() <= 16 * 1024,
        "{}",
        kept.rbuf.capacity()
    );
}

#[tokio::test]
async fn an_answer_before_the_body_is_sent_is_returned() {
    // The server answers 413 after the head and leaves the body unread. It either keeps the
    // connection open (the request's write waits for room, while the answer is watched for)
    // or closes it (its kernel resets the connection, the write fails, and the answer that
    // came first is still read). Either way the answer, not a failure, comes back.
    for close in [false, true] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut chunk = [0u8; 4096];
                let n = sock.read(&mut chunk).await.unwrap();
                seen.extend_from_slice(&chunk[..n]);
            }
            let answer = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\n\r\ntoo big!";
            sock.write_all(answer).await.unwrap();
            if !close {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
        let home = IdleList::new(4, Duration::from_secs(60));
        let mut post = get("/upload");
        *post.method_mut() = Method::POST;
        // Larger than both sockets' buffers: the write cannot finish while the body is unread.
        *post.body_mut() = RequestBody::full(Bytes::from(vec![b'x'; 32 << 20]));
        let sent = send(conn(addr, &home).await, &mut post, Extra::NONE);
        let resp = tokio::time::timeout(Duration::from_secs(3), sent)
            .await
            .expect("no hang")
            .expect("the early answer");
        assert_eq!(
            resp.status(),
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "close {close}"
        );
        assert_eq!(body_of(resp).await, "too big!");
        assert_eq!(home.len(), 0, "a connection left mid-request is not kept");
    }
}
