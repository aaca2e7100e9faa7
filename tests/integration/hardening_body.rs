//! Hardening of request bodies (issue 19): a client's malformed chunked body is the client's
//! fault: 400, never 502, and never counted as an upstream error.

use crate::support;

use std::time::Duration;

use support::attack::*;
use support::*;

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn malformed_chunked_body_is_400_and_not_an_upstream_error() {
    let backend = Backend::echo("echo").await;
    let gw = target_gateway(&backend, "", "").await;
    for body in [
        "0x5\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\nzz\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "-1\r\nhello\r\n0\r\n\r\n",
        "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ] {
        let mut c = Raw::connect(gw.addr).await;
        c.send(
            format!(
                "POST /echo/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
            )
            .as_bytes(),
        )
        .await;
        let r = c.response(T).await.expect("an answer");
        assert_eq!(r.status, 400, "{body:?}: {}", r.head);
    }
    let m = scrape(gw.running()).await;
    for kind in ["connect", "timeout", "protocol"] {
        let v = metric(
            &m,
            "portico_upstream_errors_total",
            &[("upstream", "echo"), ("kind", kind)],
        );
        assert!(v.unwrap_or(0.0) == 0.0, "{kind}: {v:?}");
    }
    // The upstream is still used normally.
    assert_eq!(get(&gw.url("/echo/ok")).await.status, 200);
}
