//! The attack corpus (issue 19): request smuggling, framing, header, request-line, Host,
//! upgrade and path vectors over raw HTTP/1.1, and HTTP/2 frame abuse written by hand. Each
//! vector states its expected outcome; a recording backend proves that nothing was smuggled (no
//! request for `/smuggled` ever reached it) and that refused vectors reached nothing.
//! Slow-client vectors live in hardening_timeouts.rs.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use support::attack::*;
use support::*;

const T: Duration = Duration::from_secs(5);

/// What a vector must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exactly this status, and the backend is reached only when it is 2xx.
    Status(u16),
    /// Any 4xx, or the connection closed without an answer; the backend is not reached.
    Refused,
    /// 400 for a body that breaks mid-stream: the head was forwarded before the body failed,
    /// so the backend may see an aborted request, but never a smuggled one.
    BodyError,
}

/// A backend that records the path of every request it gets.
async fn recording_backend() -> (Backend, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let backend = Backend::start(move |req: Request<Incoming>| {
        log.lock().unwrap().push(req.uri().to_string());
        async move {
            use http_body_util::BodyExt;
            let len = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().len())
                .unwrap_or(0);
            json_response(200, serde_json::json!({ "body_len": len }))
        }
    })
    .await;
    (backend, seen)
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n";

fn h1_vectors() -> Vec<(&'static str, String, Expect)> {
    let s = SMUGGLED;
    let v = |name, text: String, e| (name, text, e);
    use Expect::*;
    vec![
        // --- CL/TE conflicts and obfuscations (RFC 9112 §6.1, §6.3) ---
        // Both: Transfer-Encoding wins, Content-Length is dropped, and the connection closes
        // after the answer (RFC 9112 §6.3), so the bytes after the chunked body are never read.
        v("CL and TE both", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}"), Status(200)),
        v("TE then CL", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n{s}"), Status(200)),
        v("TE xchunked", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{s}"), Refused),
        v("TE chunked, identity", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{s}"), Refused),
        v("TE space before colon", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{s}"), Refused),
        v("TE obs-fold", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n{s}"), Refused),
        v("TE in HTTP/1.0", format!("POST /echo HTTP/1.0\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}"), Refused),
        v("two different CL", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\nContent-Length: 41\r\n\r\n{s}"), Refused),
        v("CL list", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0, 41\r\n\r\n{s}"), Refused),
        v("CL plus sign", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: +0\r\n\r\n{s}"), Refused),
        v("CL hex", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0x0\r\n\r\n{s}"), Refused),
        v("CL negative", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: -1\r\n\r\n{s}"), Refused),
        v("CL overflow", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 99999999999999999999999\r\n\r\n{s}"), Refused),
        // --- chunk-size forms ---
        v("chunk size 0x", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n{s}"), BodyError),
        v("chunk size overflow", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\nhello\r\n0\r\n\r\n{s}"), BodyError),
        v("chunk size negative", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n{s}"), BodyError),
        v("chunk data too long", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n{s}"), BodyError),
        v("chunk bare LF", format!("POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n{s}"), BodyError),
        // --- header syntax ---
        v("obs-fold", "GET /echo HTTP/1.1\r\nHost: gw.test\r\nX-A: 1\r\n 2\r\n\r\n".into(), Refused),
        v("space in name", "GET /echo HTTP/1.1\r\nHost: gw.test\r\nX A: 1\r\n\r\n".into(), Refused),
        v("NUL in value", "GET /echo HTTP/1.1\r\nHost: gw.test\r\nX-A: a\0b\r\n\r\n".into(), Refused),
        v("no colon", "GET /echo HTTP/1.1\r\nHost: gw.test\r\nX-A\r\n\r\n".into(), Refused),
        v("empty name", "GET /echo HTTP/1.1\r\nHost: gw.test\r\n: x\r\n\r\n".into(), Refused),
        v("CR in value", "GET /echo HTTP/1.1\r\nHost: gw.test\r\nX-A: a\rb\r\n\r\n".into(), Refused),
        v("underscore alias", "GET /echo HTTP/1.1\r\nHost: gw.test\r\nX_Forwarded_For: 1.2.3.4\r\n\r\n".into(), Status(200)),
        // --- request line forms ---
        v("double space", "GET  /echo HTTP/1.1\r\nHost: gw.test\r\n\r\n".into(), Refused),
        v("trailing junk", "GET /echo HTTP/1.1 x\r\nHost: gw.test\r\n\r\n".into(), Refused),
        v("HTTP/2.0 on h1", "GET /echo HTTP/2.0\r\nHost: gw.test\r\n\r\n".into(), Refused),
        v("HTTP/1.2", "GET /echo HTTP/1.2\r\nHost: gw.test\r\n\r\n".into(), Refused),
        v("no slash", "GET echo HTTP/1.1\r\nHost: gw.test\r\n\r\n".into(), Refused),
        v("asterisk", "OPTIONS * HTTP/1.1\r\nHost: gw.test\r\n\r\n".into(), Refused),
        v("authority-form", "CONNECT gw.test:443 HTTP/1.1\r\nHost: gw.test:443\r\n\r\n".into(), Refused),
        // The URI parser drops a fragment: `/echo` is what is routed and forwarded.
        v("fragment", "GET /echo#x HTTP/1.1\r\nHost: gw.test\r\n\r\n".into(), Status(200)),
        v("tab separator", "GET\t/echo HTTP/1.1\r\nHost: gw.test\r\n\r\n".into(), Refused),
        // --- Host rules (RFC 9112 §3.2) ---
        v("no Host", "GET /echo HTTP/1.1\r\n\r\n".into(), Status(400)),
        v("two Hosts", "GET /echo HTTP/1.1\r\nHost: gw.test\r\nHost: evil.test\r\n\r\n".into(), Status(400)),
        v("Host userinfo", "GET /echo HTTP/1.1\r\nHost: a@gw.test\r\n\r\n".into(), Status(400)),
        v("Host bad port", "GET /echo HTTP/1.1\r\nHost: gw.test:80x\r\n\r\n".into(), Status(400)),
        v("absolute-form", "GET http://gw.test/echo HTTP/1.1\r\nHost: other.test\r\n\r\n".into(), Status(200)),
        // --- upgrades ---
        v("h2c upgrade", "GET /echo HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n".into(), Status(200)),
        // --- path normalization ---
        v("encoded slash", "GET /echo/..%2fsecure HTTP/1.1\r\nHost: gw.test\r\n\r\n".into(), Status(400)),
        v("backslash", "GET /echo/..\\secure HTTP/1.1\r\nHost: gw.test\r\n\r\n".into(), Refused),
        v("params dot", "GET /echo/..;/secure HTTP/1.1\r\nHost: gw.test\r\n\r\n".into(), Status(400)),
        v("double encoded", "GET /echo/%252e%252e/secure HTTP/1.1\r\nHost: gw.test\r\n\r\n".into(), Status(400)),
        v("encoded dots", "GET /echo/%2e%2e/secure HTTP/1.1\r\nHost: gw.test\r\n\r\n".into(), Status(400)),
        v("NUL escape", "GET /echo/%00 HTTP/1.1\r\nHost: gw.test\r\n\r\n".into(), Status(400)),
    ]
}

#[tokio::test]
async fn http1_corpus() {
    let (backend, seen) = recording_backend().await;
    let gw = target_gateway(&backend, "", "").await;
    let mut failures = Vec::new();
    for (name, text, expect) in h1_vectors() {
        let before = backend.hits();
        let mut c = Raw::connect(gw.addr).await;
        c.send(text.as_bytes()).await;
        let first = c.response(T).await;
        // Whatever the gateway made of the bytes, nothing else may come back but what it
        // answers itself; read on until it closes or goes quiet.
        let mut later = Vec::new();
        while let Some(r) = c.response(Duration::from_millis(300)).await {
            later.push(r.status);
        }
        let reached = backend.hits() - before;
        let ok = match (expect, &first) {
            (Expect::Status(s), Some(r)) => r.status == s && (reached > 0) == (s < 300),
            (Expect::Status(_), None) => false,
            (Expect::Refused, Some(r)) => (400..500).contains(&r.status) && reached == 0,
            (Expect::Refused, None) => reached == 0,
            (Expect::BodyError, Some(r)) => r.status == 400,
            (Expect::BodyError, None) => false,
        };
        if !ok {
            failures.push(format!(
                "{name}: expected {expect:?}, got {:?} (backend reached {reached}x, later {later:?})",
                first.map(|r| r.status)
            ));
        }
    }
    let smuggled: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.contains("smuggled") || p.contains("secure"))
        .cloned()
        .collect();
    assert!(smuggled.is_empty(), "smuggled to the backend: {smuggled:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One h2 request on a fresh connection: the outcome of stream 1.
async fn h2_one(gw: &TestGateway, fields: &[(&str, &str)]) -> H2Outcome {
    let mut c = Raw::connect(gw.addr).await;
    c.send(&h2_start()).await;
    c.send(&headers(1, fields, true)).await;
    c.h2_outcome(1, T).await
}

#[tokio::test]
async fn http2_pseudo_header_and_field_rules() {
    let (backend, seen) = recording_backend().await;
    let gw = target_gateway(&backend, "", "").await;
    let base = |extra: &[(&'static str, &'static str)]| {
        let mut f = vec![
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "gw.test"),
            (":path", "/echo/h2"),
        ];
        f.extend_from_slice(extra);
        f
    };
    // Sanity: the well-formed request is served.
    assert_eq!(h2_one(&gw, &base(&[])).await, H2Outcome::Status(200));
    let vectors: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "missing :path",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "gw.test"),
            ],
        ),
        (
            "missing :method",
            vec![
                (":scheme", "http"),
                (":authority", "gw.test"),
                (":path", "/echo"),
            ],
        ),
        (
            "empty :path",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "gw.test"),
                (":path", ""),
            ],
        ),
        ("duplicate :path", base(&[(":path", "/secure")])),
        (
            "pseudo after regular",
            vec![
                (":method", "GET"),
                ("x-a", "1"),
                (":scheme", "http"),
                (":authority", "gw.test"),
                (":path", "/echo"),
            ],
        ),
        ("unknown pseudo", base(&[(":evil", "1")])),
        ("uppercase name", base(&[("X-Upper", "1")])),
        ("connection header", base(&[("connection", "keep-alive")])),
        ("te gzip", base(&[("te", "gzip")])),
        (
            "transfer-encoding",
            base(&[("transfer-encoding", "chunked")]),
        ),
        ("host mismatch", base(&[("host", "evil.test")])),
        (
            "bad authority",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "u@gw.test"),
                (":path", "/echo"),
            ],
        ),
        (
            "path dot-segment",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "gw.test"),
                (":path", "/echo/../secure"),
            ],
        ),
        (
            "path encoded slash",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "gw.test"),
                (":path", "/echo/..%2fsecure"),
            ],
        ),
        (
            "no authority, no host",
            vec![(":method", "GET"), (":scheme", "http"), (":path", "/echo")],
        ),
        (
            "header value with CRLF",
            base(&[("x-a", "a\r\nx-injected: 1")]),
        ),
    ];
    let mut failures = Vec::new();
    for (name, fields) in vectors {
        let before = backend.hits();
        let out = h2_one(&gw, &fields).await;
        if !out.refused() || backend.hits() != before {
            failures.push(format!(
                "{name}: {out:?}, backend reached {}x",
                backend.hits() - before
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(!seen.lock().unwrap().iter().any(|p| p.contains("secure")));
}

/// After an abusive connection, a fresh one is still served.
async fn still_serves(gw: &TestGateway) {
    let mut c = Raw::connect(gw.addr).await;
    c.send(&h2_start()).await;
    c.send(&headers(
        1,
        &get_fields("gw.test", "/echo/after", &[]),
        true,
    ))
    .await;
    assert_eq!(c.h2_outcome(1, T).await, H2Outcome::Status(200));
}

#[tokio::test]
async fn http2_floods_are_cut_or_absorbed_and_others_still_served() {
    let (backend, _) = recording_backend().await;
    let gw = target_gateway(&backend, "", "").await;

    // Rapid reset (CVE-2023-44487): open and cancel streams as fast as possible.
    let mut c = Raw::connect(gw.addr).await;
    c.send(&h2_start()).await;
    let mut burst = Vec::new();
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        burst.extend(headers(id, &get_fields("gw.test", "/echo/rr", &[]), true));
        burst.extend(rst_stream(id, 0x8));
    }
    c.send(&burst).await;
    let out = c.h2_outcome(u32::MAX, T).await;
    assert!(
        matches!(out, H2Outcome::GoAway(_) | H2Outcome::Closed),
        "rapid reset: {out:?}"
    );
    still_serves(&gw).await;

    // CONTINUATION flood: a header block that never ends.
    let mut c = Raw::connect(gw.addr).await;
    c.send(&h2_start()).await;
    c.send(&frame(
        HEADERS,
        0,
        1,
        &hpack(&get_fields("gw.test", "/echo/cf", &[])),
    ))
    .await;
    let piece = frame(
        CONTINUATION,
        0,
        1,
        &hpack(&[("x-flood", &"a".repeat(4000))]),
    );
    let mut out = H2Outcome::TimedOut;
    for _ in 0..2000 {
        if !c.send(&piece).await {
            out = H2Outcome::Closed;
            break;
        }
    }
    if out == H2Outcome::TimedOut {
        out = c.h2_outcome(1, T).await;
    }
    assert!(out.refused(), "CONTINUATION flood: {out:?}");
    still_serves(&gw).await;

    // SETTINGS and PING floods from a client that never reads the acknowledgements: 100,000
    // frames each.
    for (name, one) in [
        ("SETTINGS", frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])),
        ("PING", frame(PING, 0, 0, &[7; 8])),
    ] {
        let mut c = Raw::connect(gw.addr).await;
        c.send(&h2_start()).await;
        let mut closed = false;
        for _ in 0..200 {
            let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 500).collect();
            if !c.send(&batch).await {
                closed = true;
                break;
            }
        }
        // The acknowledgements are written in step with reading (hyper's h2 stops reading when
        // it cannot write them), so the flood is held by socket buffers, not gateway memory:
        // GOAWAY, a close or plain backpressure are all acceptable, and others are served.
        let out = if closed {
            H2Outcome::Closed
        } else {
            c.h2_outcome(u32::MAX, Duration::from_secs(1)).await
        };
        assert!(
            matches!(
                out,
                H2Outcome::GoAway(_) | H2Outcome::Closed | H2Outcome::TimedOut
            ),
            "{name} flood of 100,000 frames: {out:?}"
        );
        still_serves(&gw).await;
    }
    assert!(backend.hits() <= 2000 + 4, "{}", backend.hits());
}
