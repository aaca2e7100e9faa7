//! The load-test backend (`portico-fixed-backend`) answers correctly, directly and through the
//! gateway: keep-alive, pipelining, request bodies, h2c on the client side.

use crate::support;

use std::process::Command;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

#[test]
fn bad_arguments_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_portico-fixed-backend"))
        .args(["--body-bytes", "lots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--body-bytes"));
}

#[tokio::test]
async fn answers_pipelined_requests_in_order_and_skips_bodies() {
    let backend = FixedBackend::start(100);
    let req = b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n\
POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\nhello world\
GET /c HTTP/1.1\r\nhost: x\r\n\r\n\
POST /d HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
    let out = raw(backend.addr, req).await;
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    assert_eq!(out.matches("content-length: 100").count(), 3, "{out}");
    assert!(
        out.ends_with(
            "HTTP/1.1 501 Not Implemented\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        ),
        "{out}"
    );
}

#[tokio::test]
async fn serves_through_the_gateway_over_h1_and_h2c() {
    let backend = FixedBackend::start(64);
    let gw = TestGateway::start(
        &config()
            .no_access_log()
            .upstream("fixed", &[backend.addr])
            .route("fixed", "/", "fixed")
            .build(),
    )
    .await;
    let h1 = h1_client();
    for i in 0..20 {
        let a = send_with(
            &h1,
            Request::get(gw.url(&format!("/item/{i}")))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body.len(), 64);
        assert_eq!(a.json()["ok"], true);
        assert!(a.header("x-request-id").is_some());
    }
    let body = Bytes::from(payload(300_000));
    let a = send_with(
        &h1,
        Request::post(gw.url("/upload"))
            .body(Full::new(body))
            .unwrap(),
    )
    .await;
    assert_eq!(
        a.status, 200,
        "a body bigger than one read is skipped, not parsed as a head"
    );
    let a = send_with(
        &h1,
        Request::get(gw.url("/after"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200);
    let h2 = h2c_client();
    let a = send_with(
        &h2,
        Request::get(gw.url("/h2")).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!((a.status.as_u16(), a.body.len()), (200, 64));
}
