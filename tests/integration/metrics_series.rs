//! `/metrics` series beyond the per-route basics: method and code labels, upstream latency to
//! the response head, build info, process metrics, certificate expiry and auth denials by
//! reason, scraped from a real gateway and parsed strictly.

use crate::support;

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use support::tls::Pki;
use support::*;

const SECRET: &str = "a-test-secret-of-more-than-thirty-two-bytes";

#[tokio::test]
async fn labelled_series_after_real_traffic() {
    let backend = Backend::echo("app").await;
    let pki = Pki::new("Test CA");
    let leaf = pki.server(&["api.test"]);
    let text = config()
        .admin()
        .upstream("app", &[backend.addr])
        .provider(
            "dev",
            "https://issuer.test",
            &["HS256"],
            "secret_file = \"hs.secret\"",
        )
        .route("app", "/app", "app")
        .route_with(
            "private",
            "/private",
            "app",
            "auth = { provider = \"dev\" }",
        )
        .toml(
            r#"[server.tls]
listen = "127.0.0.1:0"
certificates = [{ cert = "certs/api.pem", key = "certs/api.key" }]"#,
        )
        .build();
    let gw = TestGateway::start_with_files(
        &text,
        &[
            ("hs.secret", SECRET),
            ("certs/api.pem", &leaf.cert_pem),
            ("certs/api.key", &leaf.key_pem),
        ],
    )
    .await;

    for _ in 0..2 {
        assert_eq!(get(&gw.url("/app/a")).await.status, StatusCode::OK);
    }
    let post = Request::builder()
        .method(Method::POST)
        .uri(gw.url("/app/b"))
        .body(Full::from("x"))
        .unwrap();
    assert_eq!(send(post).await.status, StatusCode::OK);
    let odd = Request::builder()
        .method(Method::from_bytes(b"PURGE").unwrap())
        .uri(gw.url("/app/c"))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(odd).await.status, StatusCode::OK);
    assert_eq!(
        get(&gw.url("/private")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let expired = hs256(
        SECRET,
        &serde_json::json!({"iss": "https://issuer.test", "aud": "portico", "exp": unix_now() - 3600}),
    );
    let with_expired = Request::get(gw.url("/private"))
        .header("authorization", format!("Bearer {expired}"))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(with_expired).await.status, StatusCode::UNAUTHORIZED);

    let m = scrape(gw.running()).await;
    let v = |name: &str, labels: &[(&str, &str)]| metric(&m, name, labels);
    let req = "portico_requests_total";
    assert_eq!(
        v(req, &[("route", "app"), ("method", "GET"), ("code", "2xx")]),
        Some(2.0)
    );
    assert_eq!(
        v(
            req,
            &[("route", "app"), ("method", "POST"), ("code", "2xx")]
        ),
        Some(1.0)
    );
    // A method outside the fixed set cannot grow the series: it counts as OTHER.
    assert_eq!(
        v(
            req,
            &[("route", "app"), ("method", "OTHER"), ("code", "2xx")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            req,
            &[("route", "private"), ("method", "GET"), ("code", "4xx")]
        ),
        Some(2.0)
    );
    assert_eq!(v(req, &[("route", "app"), ("method", "PUT")]), None);

    // Four exchanges reached the upstream; the denied ones did not.
    assert_eq!(
        v(
            "portico_upstream_response_duration_seconds_count",
            &[("upstream", "app")]
        ),
        Some(4.0)
    );

    let denied: Vec<(String, f64)> = samples(&m, "portico_auth_denied_total")
        .map(|(labels, value)| (labels.get("reason").unwrap().to_string(), value))
        .collect();
    assert_eq!(denied.len(), 2, "two reasons: {denied:?}");
    assert!(denied.iter().all(|(_, n)| *n == 1.0), "{denied:?}");
    assert!(
        denied.iter().any(|(r, _)| r.contains("expired")),
        "{denied:?}"
    );

    let build: Vec<_> = samples(&m, "portico_build_info").collect();
    assert_eq!(build.len(), 1);
    let (labels, value) = &build[0];
    assert_eq!(*value, 1.0);
    assert_eq!(labels.get("version"), Some(env!("CARGO_PKG_VERSION")));
    assert!(!labels.get("commit").unwrap_or("").is_empty());

    if cfg!(target_os = "linux") {
        assert!(v("process_resident_memory_bytes", &[]).unwrap() > 1e6);
        assert!(v("process_open_fds", &[]).unwrap() >= 3.0);
        assert!(v("process_cpu_seconds_total", &[]).unwrap() >= 0.0);
    }

    let certs: Vec<_> = samples(&m, "portico_tls_certificate_expiry_timestamp_seconds").collect();
    assert_eq!(certs.len(), 1, "{certs:?}");
    let (labels, not_after) = &certs[0];
    assert!(labels.get("certificate").unwrap().ends_with("api.pem"));
    assert!(*not_after > unix_now() as f64, "{not_after}");
}

/// Every sample of `name` as (labels, value) (counters and gauges).
fn samples<'a>(
    scrape: &'a prometheus_parse::Scrape,
    name: &'a str,
) -> impl Iterator<Item = (&'a prometheus_parse::Labels, f64)> + 'a {
    use prometheus_parse::Value;
    scrape
        .samples
        .iter()
        .filter(move |s| s.metric == name)
        .filter_map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some((&s.labels, v)),
            _ => None,
        })
}
