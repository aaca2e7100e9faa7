//! Portico's own HTTP/1.1 server codec, over raw sockets: `expect: 100-continue`, pipelined
//! requests with bodies, chunked request bodies, HTTP/1.0 clients (keep-alive on request,
//! close-delimited streamed answers), a client that leaves mid-request, and the drain.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A backend answering `/stream` with three chunks of unknown total length, `/slow` after
/// 2 s, and everything else with the method, path and body it received.
async fn gateway() -> (Backend, TestGateway) {
    let backend = Backend::start(|req| async move {
        let path = req.uri().path().to_owned();
        match path.as_str() {
            "/stream" => {
                let chunks = ["one;", "two;", "three;"]
                    .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(c))));
                let stream = futures_util::stream::iter(chunks);
                Response::new(BodyExt::boxed(StreamBody::new(stream)))
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Response::new(full("slow"))
            }
            "/fields" => {
                // The x-one/two/three fields (sorted: the gateway does not keep the order
                // of different names), and a response field named after how many there were.
                let mut got: Vec<String> = req
                    .headers()
                    .iter()
                    .filter(|(n, _)| ["x-one", "x-two", "x-three"].contains(&n.as_str()))
                    .map(|(n, v)| format!("{n}={};", v.to_str().unwrap()))
                    .collect();
                got.sort();
                Response::builder()
                    .header(format!("x-back-{}", got.len()), "yes")
                    .body(full(got.concat()))
                    .unwrap()
            }
            _ => {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                let text = format!("{} {path} {}", parts.method, String::from_utf8_lossy(&body));
                Response::new(full(text))
            }
        }
    })
    .await;
    let cfg = config()
        .admin()
        .upstream("app", &[backend.addr])
        .route("all", "/", "app")
        .build();
    (backend, TestGateway::start(&cfg).await)
}

/// Reads one answer: head, then its content-length bytes, chunks to the last one, or (with
/// neither) to the end of the stream. Returns the head (lower case) and the body.
async fn answer(s: &mut TcpStream, buf: &mut Vec<u8>) -> (String, String) {
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        assert!(read(s, buf).await > 0, "closed before a head");
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    buf.drain(..end + 4);
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|n| n.trim().parse::<usize>().unwrap());
    let chunked = head.contains("transfer-encoding: chunked");
    let body = loop {
        match length {
            Some(n) if buf.len() >= n => break buf.drain(..n).collect::<Vec<u8>>(),
            None if chunked => {
                if let Some(at) = find(buf, b"0\r\n\r\n") {
                    let raw: Vec<u8> = buf.drain(..at + 5).collect();
                    break dechunk(&raw);
                }
            }
            _ => {}
        }
        if read(s, buf).await == 0 {
            assert!(length.is_none() && !chunked, "closed mid-answer");
            break std::mem::take(buf);
        }
    };
    (head, String::from_utf8(body).unwrap())
}

/// Reads what arrives (within 5 s) onto `buf`; 0 at the end of the stream.
async fn read(s: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    buf.extend_from_slice(&chunk[..n]);
    n
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = find(raw, b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 4 + size..];
    }
}

#[tokio::test]
async fn expect_100_continue_is_answered_when_the_body_is_wanted() {
    let (_backend, gw) = gateway().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"PUT /up HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("100 Continue before the body is sent")
            .unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(buf, b"HTTP/1.1 100 Continue\r\n\r\n");
    buf.clear();
    s.write_all(b"hello").await.unwrap();
    let (head, body) = answer(&mut s, &mut buf).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "PUT /up hello");
}

#[tokio::test]
async fn pipelined_requests_with_bodies_are_answered_in_order_on_one_connection() {
    let (backend, gw) = gateway().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /1 HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc\
          POST /2 HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n\
          GET /3 HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    assert_eq!(answer(&mut s, &mut buf).await.1, "POST /1 abc");
    assert_eq!(answer(&mut s, &mut buf).await.1, "POST /2 def");
    assert_eq!(answer(&mut s, &mut buf).await.1, "GET /3 ");
    assert_eq!(backend.hits(), 3);
}

#[tokio::test]
async fn http10_clients_keep_alive_only_when_asked_and_get_streams_delimited_by_close() {
    let (_backend, gw) = gateway().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(b"GET /a HTTP/1.0\r\nhost: x\r\nconnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = answer(&mut s, &mut buf).await;
    assert!(head.contains("connection: keep-alive"), "{head}");
    assert_eq!(body, "GET /a ");
    // The same connection; an answer of unknown length cannot be chunked for HTTP/1.0.
    s.write_all(b"GET /stream HTTP/1.0\r\nhost: x\r\nconnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = answer(&mut s, &mut buf).await;
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body, "one;two;three;");
    // HTTP/1.1 gets the same answer chunked, on a connection that stays open.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = answer(&mut s, &mut buf).await;
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert_eq!(body, "one;two;three;");
    assert_eq!(answer(&mut s, &mut buf).await.1, "GET /b ");
    // Without keep-alive, HTTP/1.0 closes after the answer.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /c HTTP/1.0\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = answer(&mut s, &mut buf).await;
    assert!(head.contains("connection: close"), "{head}");
    let mut rest = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut rest))
        .await
        .expect("closed after the answer")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_client_that_leaves_mid_request_cancels_it() {
    let (_backend, gw) = gateway().await;
    let in_flight = || async {
        metric(
            &scrape(gw.running()).await,
            "portico_requests_in_flight",
            &[],
        )
    };
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(in_flight().await, Some(1.0), "the slow request runs");
    drop(s);
    // The backend answers after 2 s; the request is gone well before.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        in_flight().await,
        Some(0.0),
        "the abandoned request was cancelled"
    );
}

/// A drain closes, at once, a keep-alive connection waiting for its next request and one that
/// has not sent a byte yet; a request in flight on a third still gets its answer, marked as
/// the connection's last.
#[tokio::test]
async fn a_drain_closes_waiting_connections_at_once_and_finishes_the_request_in_flight() {
    let (_backend, mut gw) = gateway().await;
    let mut waiting = TcpStream::connect(gw.addr).await.unwrap();
    waiting
        .write_all(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = answer(&mut waiting, &mut Vec::new()).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let shutdown = tokio::spawn(gw.running.take().unwrap().shutdown());
    for (name, s) in [("waiting", &mut waiting), ("silent", &mut silent)] {
        let (rest, took) = read_until_closed(s, Duration::from_secs(10)).await;
        assert!(
            rest.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&rest)
        );
        assert!(
            took < Duration::from_secs(5),
            "{name} closed after {took:?}"
        );
    }
    // Both closed while the slow answer (2 s after its request) was still being made.
    let mut probe = [0u8; 1];
    assert!(
        matches!(slow.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the slow answer came before the waiting connections were closed"
    );
    let (head, body) = answer(&mut slow, &mut Vec::new()).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body, "slow");
    assert!(shutdown.await.unwrap(), "the drain did not finish cleanly");
}

/// Field names are remembered per connection (client side and upstream side) between heads:
/// heads whose names change order, case or number are still read exactly.
#[tokio::test]
async fn heads_with_changing_field_names_on_one_connection_are_read_exactly() {
    let (backend, gw) = gateway().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = Vec::new();
    let cases: [(&str, &str, &str); 4] = [
        (
            "X-One: 1\r\nX-Two: 2\r\n",
            "x-one=1;x-two=2;",
            "x-back-2: yes",
        ),
        (
            "X-Two: 3\r\nX-One: 4\r\n",
            "x-one=4;x-two=3;",
            "x-back-2: yes",
        ),
        (
            "x-one: a\r\nX-TWO: b\r\nX-Three: c\r\n",
            "x-one=a;x-three=c;x-two=b;",
            "x-back-3: yes",
        ),
        ("X-Three: d\r\n", "x-three=d;", "x-back-1: yes"),
    ];
    for round in 0..2 {
        for (fields, want, back) in cases {
            let head = format!("GET /fields HTTP/1.1\r\nhost: x\r\n{fields}\r\n");
            s.write_all(head.as_bytes()).await.unwrap();
            let (head, body) = answer(&mut s, &mut buf).await;
            assert!(head.starts_with("http/1.1 200"), "{round}: {head}");
            assert_eq!(body, want, "{round}: {fields}");
            assert!(head.contains(back), "{round}: {head}");
            let backs = head.lines().filter(|l| l.starts_with("x-back-")).count();
            assert_eq!(backs, 1, "{round}: {head}");
        }
    }
    assert_eq!(backend.hits(), 8);
}
