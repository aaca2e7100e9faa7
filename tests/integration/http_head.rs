//! HEAD is served wherever GET is: a route limited to GET answers HEAD with the GET answer's
//! status and headers and no body, and `Allow` on a 405 lists HEAD.

use crate::support;

use http::StatusCode;
use support::*;

#[tokio::test]
async fn a_get_route_serves_head_without_a_body_and_allow_lists_head() {
    let backend = Backend::echo("app").await;
    let cfg = support::config()
        .upstream("app", &[backend.addr])
        .route_with("app", "/app", "app", "")
        .build()
        .replace(
            "match = { path_prefix = \"/app\" }",
            "match = { path_prefix = \"/app\", methods = [\"GET\"] }",
        );
    let gw = TestGateway::start(&cfg).await;
    let got = get(&gw.url("/app/x")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(!got.body.is_empty());

    let head = send(
        http::Request::head(gw.url("/app/x"))
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK, "HEAD is served like GET");
    assert!(head.body.is_empty(), "no body for HEAD");

    let post = send(
        http::Request::post(gw.url("/app/x"))
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}
