//! HTTPS upstreams: a private CA via `ca_file`, `tls = true` with `server_name`, upstream mTLS,
//! certificate reload and config errors.

use crate::support;

use http::StatusCode;
use support::tls::{Pki, TlsBackend, server_config};
use support::{TestGateway, get, write};

fn config(upstream: &str) -> String {
    support::config()
        .toml(&format!("[upstreams.secure]\ntimeout = \"5s\"\n{upstream}"))
        .route("secure", "/", "secure")
        .build()
}

#[tokio::test]
async fn https_upstream_verified_with_a_custom_ca() {
    let pki = Pki::new("Internal CA");
    let backend = TlsBackend::start(server_config(
        &pki.server(&["localhost", "127.0.0.1"]),
        None,
    ))
    .await;
    let port = backend.addr.port();
    let upstream = format!("endpoints = [\"https://localhost:{port}\"]\nca_file = \"ca.pem\"");
    let gw = TestGateway::start_with_files(&config(&upstream), &[("ca.pem", &pki.ca_pem)]).await;
    let rt = gw.running().gateway.runtime();
    assert!(
        rt.sources.contains(&gw.dir.path().join("ca.pem")),
        "{:?}",
        rt.sources
    );

    let r = get(&gw.url("/items?x=1")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let echo = r.json();
    assert_eq!(echo["path"], "/items");
    assert_eq!(
        echo["sni"], "localhost",
        "SNI from the endpoint's host name"
    );
    assert_eq!(echo["client"], serde_json::Value::Null);

    // Without the private CA (system roots only) the backend's certificate is refused: 502.
    write(
        gw.dir.path(),
        "gateway.toml",
        &config(&format!("endpoints = [\"https://localhost:{port}\"]")),
    );
    gw.running().gateway.reload().expect("reload");
    let r = get(&gw.url("/items")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        r.json()["type"],
        "https://portico.dev/problems/upstream-unreachable"
    );
}

#[tokio::test]
async fn tls_true_with_server_name_for_an_ip_endpoint() {
    let pki = Pki::new("Internal CA");
    let backend = TlsBackend::start(server_config(&pki.server(&["users.internal"]), None)).await;
    let upstream = format!(
        "endpoints = [\"{}\"]\ntls = true\nserver_name = \"users.internal\"\nca_file = \"ca.pem\"",
        backend.addr
    );
    let gw = TestGateway::start_with_files(&config(&upstream), &[("ca.pem", &pki.ca_pem)]).await;
    let r = get(&gw.url("/u/7")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["sni"], "users.internal");

    // The certificate does not name the IP: without server_name verification fails.
    let upstream = format!(
        "endpoints = [\"{}\"]\ntls = true\nca_file = \"ca.pem\"",
        backend.addr
    );
    write(gw.dir.path(), "gateway.toml", &config(&upstream));
    gw.running().gateway.reload().expect("reload");
    assert_eq!(get(&gw.url("/u/7")).await.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn upstream_mtls_presents_the_configured_client_certificate() {
    let server_ca = Pki::new("Internal CA");
    let client_ca = Pki::new("Gateway clients CA");
    let gateway_cert = client_ca.client("portico-gateway", &[]);
    let backend = TlsBackend::start(server_config(
        &server_ca.server(&["localhost"]),
        Some(&client_ca),
    ))
    .await;
    let port = backend.addr.port();
    let with_cert = format!(
        "endpoints = [\"https://localhost:{port}\"]\nca_file = \"ca.pem\"\nclient_cert = {{ cert = \"gw.pem\", key = \"gw.key\" }}"
    );
    let files = [
        ("ca.pem", server_ca.ca_pem.as_str()),
        ("gw.pem", gateway_cert.cert_pem.as_str()),
        ("gw.key", gateway_cert.key_pem.as_str()),
    ];
    let gw = TestGateway::start_with_files(&config(&with_cert), &files).await;
    for f in ["ca.pem", "gw.pem", "gw.key"] {
        assert!(
            gw.running()
                .gateway
                .runtime()
                .sources
                .contains(&gw.dir.path().join(f))
        );
    }
    let r = get(&gw.url("/")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["client"], "CN=portico-gateway");

    // Without a client certificate the backend refuses the handshake.
    let without = format!("endpoints = [\"https://localhost:{port}\"]\nca_file = \"ca.pem\"");
    write(gw.dir.path(), "gateway.toml", &config(&without));
    gw.running().gateway.reload().expect("reload");
    assert_eq!(get(&gw.url("/")).await.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn upstream_tls_config_errors_name_file_and_key() {
    let pki = Pki::new("Internal CA");
    let leaf = pki.server(&["a.test"]);
    let other = pki.server(&["b.test"]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ca.pem", "not a pem");
    write(dir.path(), "gw.pem", &leaf.cert_pem);
    write(dir.path(), "gw.key", &other.key_pem);
    // The builder keeps `[server]` to its two lines: the positions below count on it.
    let toml = support::config().admin_unset().toml(
        r#"
[upstreams.a]
endpoints = ["https://a.test:443"]
ca_file = "ca.pem"
client_cert = { cert = "gw.pem", key = "gw.key" }
server_name = "bad name!"

[upstreams.b]
endpoints = ["127.0.0.1:9"]
ca_file = "missing.pem"

[upstreams.c]
endpoints = ["http://127.0.0.1:9", "https://127.0.0.1:10"]
tls = false
"#,
    );
    write(dir.path(), "gateway.toml", &toml.build());
    let err = support::load_errors_in(dir.path());
    let expect = [
        ("6:11", "upstreams.a.ca_file", "ca.pem: not PEM"),
        (
            "7:15",
            "upstreams.a.client_cert",
            "gw.key: private key does not match the certificate in",
        ),
        ("8:15", "upstreams.a.server_name", "bad server name"),
        (
            "12:11",
            "upstreams.b.ca_file",
            "has no effect: no endpoint uses TLS",
        ),
        (
            "15:36",
            "upstreams.c.endpoints[1]",
            "tls = false but this endpoint is https://",
        ),
    ];
    support::assert_errors_at(&err, &expect);
}
