//! HTTP/1.1 framing on the upstream side: a raw-TCP upstream writes hand-made answers.

use crate::support;
use crate::support::raw_h1;

use http::{Request, StatusCode};
use http_body_util::Full;
use raw_h1::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_response_with_extensions_and_trailers_keeps_the_connection() {
    let up = RawUpstream::start(|_| {
        Reply::keep(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n\
             5;ext=1\r\nhello\r\n7;a=\"b c\";d\r\n, world\r\n0\r\nx-sum: 42\r\nx-other: y\r\n\r\n",
        )
    })
    .await;
    let gw = gateway(&up).await;
    for i in 0..2 {
        let r = get(&gw.url(&format!("/c/{i}"))).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], b"hello, world", "extensions are not data");
        settle().await;
    }
    assert_eq!(
        up.accepted(),
        1,
        "the connection is reused after the trailers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delimited_response_is_read_to_eof_and_not_reused() {
    let up = RawUpstream::start(|n| {
        Reply::close(format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil eof {n}"
        ))
    })
    .await;
    let gw = gateway(&up).await;
    for n in 0..2 {
        let r = get(&gw.url("/eof")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, format!("until eof {n}"));
        assert_eq!(
            up.accepted(),
            n + 1,
            "a close-delimited body ends its connection"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_response_with_content_length_has_no_body() {
    let up = RawUpstream::start(|n| match n {
        0 => Reply::keep("HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n"),
        _ => Reply::keep(ok("after head")),
    })
    .await;
    let gw = gateway(&up).await;
    let head = Request::head(gw.url("/h")).body(Full::default()).unwrap();
    let (status, body) = fetch(head).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.unwrap().len(), 0);
    assert!(
        up.seen()[0].head.starts_with("HEAD /h HTTP/1.1"),
        "{:?}",
        up.seen()
    );
    // Had the gateway waited for 1234 body bytes, this GET would time out or read them.
    settle().await;
    let r = get(&gw.url("/g")).await;
    assert_eq!(
        (r.status, &r.body[..]),
        (StatusCode::OK, &b"after head"[..])
    );
    assert_eq!(up.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_content_and_not_modified_have_no_body_and_keep_the_connection() {
    let up = RawUpstream::start(|n| match n {
        0 => Reply::keep("HTTP/1.1 204 No Content\r\nx-n: 0\r\n\r\n"),
        // A 304 may carry the content-length of the representation: still no body.
        1 => Reply::keep("HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 10\r\n\r\n"),
        _ => Reply::keep(ok("fresh")),
    })
    .await;
    let gw = gateway(&up).await;
    let r = get(&gw.url("/a")).await;
    assert_eq!((r.status, r.body.len()), (StatusCode::NO_CONTENT, 0));
    settle().await;
    let r = get(&gw.url("/b")).await;
    assert_eq!((r.status, r.body.len()), (StatusCode::NOT_MODIFIED, 0));
    assert_eq!(r.header("etag"), Some("\"v1\""));
    settle().await;
    let r = get(&gw.url("/c")).await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"fresh"[..]));
    assert_eq!(up.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_before_the_final_one_are_skipped() {
    let up = RawUpstream::start(|n| match n {
        0 => Reply::keep([&b"HTTP/1.1 100 Continue\r\n\r\n"[..], &ok("after continue")].concat()),
        1 => Reply::keep(
            [
                &b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n"[..],
                &ok("after hints"),
            ]
            .concat(),
        ),
        _ => Reply::keep(ok("plain")),
    })
    .await;
    let gw = gateway(&up).await;
    for (path, want) in [("/c", "after continue"), ("/h", "after hints")] {
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let text = raw(gw.addr, req.as_bytes()).await;
        // Today (hyper's client) the 1xx answers are dropped, the client sees only the 200.
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            !text.contains(" 103 ") && !text.contains("rel=preload"),
            "{text}"
        );
        assert!(text.ends_with(want), "{text}");
        settle().await;
    }
    assert_eq!(get(&gw.url("/p")).await.body, "plain");
    assert_eq!(
        up.accepted(),
        1,
        "the interim answers do not end the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_and_http10_responses_are_not_reused() {
    // The upstream keeps its end open: only the gateway's reading of the head closes it.
    let up = RawUpstream::start(|n| match n {
        0 => Reply::keep("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nfirst"),
        1 => Reply::keep("HTTP/1.0 200 OK\r\ncontent-length: 6\r\n\r\nsecond"),
        _ => Reply::keep(ok("third")),
    })
    .await;
    let gw = gateway(&up).await;
    for (n, want) in ["first", "second", "third"].into_iter().enumerate() {
        let r = get(&gw.url("/x")).await;
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, want.as_bytes()));
        assert_eq!(up.accepted(), n + 1, "request {n} on a new connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_written_a_few_bytes_at_a_time_is_intact() {
    let text = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-slow: yes\r\n\r\n\
                6;e=1\r\nsplit \r\nb\r\ninto pieces\r\n0\r\nx-t: 1\r\n\r\n";
    // 3 bytes per write, 1 ms apart: the head and every chunk line arrive in pieces.
    let up = RawUpstream::start(move |_| Reply {
        piece: 3,
        ..Reply::keep(text)
    })
    .await;
    let gw = gateway(&up).await;
    for _ in 0..2 {
        let r = get(&gw.url("/slow")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-slow"), Some("yes"));
        assert_eq!(r.body, "split into pieces");
        settle().await;
    }
    assert_eq!(up.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_responses_with_length_and_chunked_are_intact() {
    const SIZE: usize = 4 << 20;
    let data = payload(SIZE);
    let mut sized = format!("HTTP/1.1 200 OK\r\ncontent-length: {SIZE}\r\n\r\n").into_bytes();
    sized.extend_from_slice(&data);
    let mut chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for c in data.chunks(16 * 1024) {
        chunked.extend(format!("{:x}\r\n", c.len()).as_bytes());
        chunked.extend_from_slice(c);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let up =
        RawUpstream::start(move |n| Reply::keep(if n % 2 == 0 { &sized } else { &chunked })).await;
    let gw = gateway(&up).await;
    for path in ["/sized", "/chunked", "/sized-again"] {
        let r = get(&gw.url(path)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body.len(), SIZE, "{path}");
        assert_eq!(checksum(&r.body), checksum(&data), "{path}");
        settle().await;
    }
    assert_eq!(up.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_reach_the_upstream_well_framed() {
    let up = RawUpstream::start(|_| Reply::keep(ok("ok"))).await;
    let gw = gateway(&up).await;
    let post = Request::post(gw.url("/sized"))
        .body(Full::from("hello world"))
        .unwrap();
    assert_eq!(send(post).await.status, StatusCode::OK);
    settle().await;
    let chunks: [&[u8]; 3] = [b"hello ", b"chunked ", b"world"];
    let text = raw(gw.addr, &chunked_post("/chunked", chunks)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    settle().await;
    assert_eq!(get(&gw.url("/empty")).await.status, StatusCode::OK);

    let seen = up.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let sized = &seen[0];
    assert_eq!(sized.header("content-length").as_deref(), Some("11"));
    assert_eq!(sized.header("transfer-encoding"), None);
    assert_eq!(sized.body, b"hello world");
    // Streamed on as it came (chunked) or with a length: either way exactly one framing.
    let streamed = &seen[1];
    let framings = [
        streamed.header("transfer-encoding"),
        streamed.header("content-length"),
    ];
    assert_eq!(framings.iter().flatten().count(), 1, "{streamed:?}");
    if let Some(te) = &framings[0] {
        assert_eq!(te, "chunked");
    }
    assert_eq!(streamed.body, b"hello chunked world");
    let empty = &seen[2];
    assert!(empty.head.starts_with("GET /empty HTTP/1.1"), "{empty:?}");
    assert_eq!(empty.header("transfer-encoding"), None, "{empty:?}");
    assert_eq!(empty.header("content-length"), None, "{empty:?}");
    assert!(empty.body.is_empty());
    assert_eq!(up.accepted(), 1, "all three on one connection");
}
