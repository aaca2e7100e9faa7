//! BFF answers carry a strong ETag (a hash of the body) and the endpoint's `cache_control`;
//! a matching If-None-Match (GET or HEAD) gets 304 without a body.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Method, Request};
use http_body_util::Full;
use serde_json::json;
use support::*;

/// A backend whose answer is `{"v": V}`, V changed by the test.
async fn versioned(v: Arc<AtomicUsize>) -> Backend {
    Backend::start(move |_req: http::Request<hyper::body::Incoming>| {
        let n = v.load(Ordering::SeqCst);
        async move { json_response(200, json!({"v": n})) }
    })
    .await
}

fn req(method: Method, url: &str, inm: Option<&str>) -> Request<Full<bytes::Bytes>> {
    let mut b = Request::builder().method(method).uri(url);
    if let Some(v) = inm {
        b = b.header("if-none-match", v);
    }
    b.body(Full::default()).unwrap()
}

#[tokio::test]
async fn etag_and_304_follow_the_body() {
    let v = Arc::new(AtomicUsize::new(1));
    let backend = versioned(v.clone()).await;
    let g = support::config()
        .no_access_log()
        .upstream("b", &[backend.addr])
        .build();
    let p = profile("/web")
        .endpoint("/home")
        .keys("cache_control = \"private, max-age=10\"")
        .part("p", "b", "/x", "required = true")
        .endpoint("/other")
        .part("p", "b", "/x", "required = true")
        .build();
    let gw = TestGateway::start_with_files(&g, &[("bff/web.toml", &p)]).await;

    let first = get(&gw.url("/web/home")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["p"]["v"], 1);
    let etag = first.header("etag").unwrap().to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10,
        "{etag}"
    );
    assert_eq!(first.header("cache-control"), Some("private, max-age=10"));
    // Same body, same tag; the default Cache-Control is per caller.
    let other = get(&gw.url("/web/other")).await;
    assert_eq!(other.header("etag"), Some(etag.as_str()));
    assert_eq!(other.header("cache-control"), Some("private, no-store"));

    let a = send(req(Method::GET, &gw.url("/web/home"), Some(&etag))).await;
    assert_eq!(a.status, 304);
    assert!(a.body.is_empty());
    assert_eq!(a.header("etag"), Some(etag.as_str()));
    assert_eq!(a.header("cache-control"), Some("private, max-age=10"));
    // A list, a weak form of the tag, and `*` match too; HEAD behaves like GET.
    let list = format!("\"nope\", W/{etag}");
    assert_eq!(
        send(req(Method::GET, &gw.url("/web/home"), Some(&list)))
            .await
            .status,
        304
    );
    assert_eq!(
        send(req(Method::GET, &gw.url("/web/home"), Some("*")))
            .await
            .status,
        304
    );
    assert_eq!(
        send(req(Method::HEAD, &gw.url("/web/home"), Some(&etag)))
            .await
            .status,
        304
    );
    let head = send(req(Method::HEAD, &gw.url("/web/home"), None)).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("etag"), Some(etag.as_str()));

    // A changed body: a new tag, and the old one no longer matches.
    v.store(2, Ordering::SeqCst);
    let a = send(req(Method::GET, &gw.url("/web/home"), Some(&etag))).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["p"]["v"], 2);
    assert_ne!(a.header("etag"), Some(etag.as_str()));
}
