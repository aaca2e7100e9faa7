//! The HTTPS listener end to end: SNI, ALPN, TLS versions, garbage on the port, redirect and
//! HSTS, mTLS, and certificate reload (all with rcgen-made CAs and certificates).

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::Full;
use support::tls::{
    ClientOpts, Conn, Leaf, Pki, client_config, https_get, raw_exchange, served_cert, tls_connect,
};
use support::{Backend, TestGateway, h1_client, send_with, write};

const CERT_A: &str = "{ cert = \"certs/api.pem\", key = \"certs/api.key\" }";

fn config(backend: SocketAddr, certificates: &str, tls_extra: &str, routes_extra: &str) -> String {
    let tls = format!(
        "[server.tls]\nlisten = \"127.0.0.1:0\"\ncertificates = [ {certificates} ]\n{tls_extra}"
    );
    support::config()
        .toml(&tls)
        .upstream_with("echo", &[backend], "timeout = \"5s\"")
        .toml(routes_extra)
        .route("all", "/", "echo")
        .build()
}

fn pair<'a>(name: &str, leaf: &'a Leaf) -> [(String, &'a str); 2] {
    [
        (format!("certs/{name}.pem"), leaf.cert_pem.as_str()),
        (format!("certs/{name}.key"), leaf.key_pem.as_str()),
    ]
}

async fn start(toml: &str, files: &[(String, &str)]) -> TestGateway {
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    TestGateway::start_with_files(toml, &files).await
}

fn https(gw: &TestGateway) -> SocketAddr {
    gw.running().https_addr().expect("an HTTPS listener")
}

fn trust(pki: &Pki) -> std::sync::Arc<rustls::ClientConfig> {
    client_config(ClientOpts {
        roots: vec![pki],
        ..Default::default()
    })
}

fn header<'a>(echo: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    echo["headers"][name]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn https_through_both_sni_names_and_the_default_certificate() {
    let backend = Backend::echo("echo").await;
    let pki = Pki::new("Test CA");
    let api = pki.server(&["api.test", "127.0.0.1"]);
    let shop = pki.server(&["*.shop.test"]);
    let certs = format!("{CERT_A}, {{ cert = \"certs/shop.pem\", key = \"certs/shop.key\" }}");
    let files = [pair("api", &api), pair("shop", &shop)].concat();
    let gw = start(&config(backend.addr, &certs, "", ""), &files).await;
    let addr = https(&gw);
    let cfg = trust(&pki);

    for (name, want) in [
        ("api.test", &api),
        ("www.shop.test", &shop),
        ("127.0.0.1", &api),
    ] {
        let stream = tls_connect(addr, name, cfg.clone())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(served_cert(&stream), want.der, "certificate for {name}");
        let (_, answer) = Conn::over(stream)
            .await
            .unwrap()
            .get(name, "/hello?q=1")
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{name}");
        let echo = answer.json();
        assert_eq!(echo["path"], "/hello");
        assert_eq!(header(&echo, "x-forwarded-proto"), ["https"], "{name}");
    }
    // A wildcard covers one label only: a deeper name gets the default (api) certificate,
    // which the client rightly refuses.
    assert!(
        tls_connect(addr, "a.www.shop.test", cfg.clone())
            .await
            .is_err()
    );
    assert_eq!(backend.hits(), 3);
}

#[tokio::test]
async fn strict_sni_refuses_missing_and_unknown_names() {
    let backend = Backend::echo("echo").await;
    let pki = Pki::new("Test CA");
    let api = pki.server(&["api.test", "127.0.0.1"]);
    let gw = start(
        &config(backend.addr, CERT_A, "strict_sni = true", ""),
        &pair("api", &api),
    )
    .await;
    let cfg = trust(&pki);
    assert!(
        tls_connect(https(&gw), "127.0.0.1", cfg.clone())
            .await
            .is_err(),
        "no SNI"
    );
    let ok = https_get(https(&gw), "api.test", cfg, "/").await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn alpn_negotiates_h2_or_http11() {
    let backend = Backend::echo("echo").await;
    let pki = Pki::new("Test CA");
    let api = pki.server(&["api.test"]);
    let gw = start(&config(backend.addr, CERT_A, "", ""), &pair("api", &api)).await;
    type Offer = &'static [&'static [u8]];
    let cases: [(Offer, Option<&[u8]>, Version); 3] = [
        (&[b"h2", b"http/1.1"], Some(b"h2"), Version::HTTP_2),
        (&[b"http/1.1"], Some(b"http/1.1"), Version::HTTP_11),
        (&[], None, Version::HTTP_11),
    ];
    for (offer, agreed, version) in cases {
        let cfg = client_config(ClientOpts {
            roots: vec![&pki],
            alpn: offer.to_vec(),
            ..Default::default()
        });
        let stream = tls_connect(https(&gw), "api.test", cfg).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), agreed);
        let mut conn = Conn::over(stream).await.unwrap();
        for _ in 0..2 {
            let (v, answer) = conn.get("api.test", "/x").await.unwrap();
            assert_eq!((v, answer.status), (version, StatusCode::OK));
            assert_eq!(header(&answer.json(), "x-forwarded-proto"), ["https"]);
        }
    }
}

/// A TLS connection quiet past the 1 s after which an idle HTTP/1 connection releases hyper's
/// buffer (src/server/h1.rs) goes on serving over the same TLS session.
#[tokio::test]
async fn a_released_idle_tls_connection_serves_its_next_request() {
    let backend = Backend::echo("echo").await;
    let pki = Pki::new("Test CA");
    let api = pki.server(&["api.test"]);
    let gw = start(&config(backend.addr, CERT_A, "", ""), &pair("api", &api)).await;
    for alpn in [&[][..], &[&b"http/1.1"[..]][..]] {
        let cfg = client_config(ClientOpts {
            roots: vec![&pki],
            alpn: alpn.to_vec(),
            ..Default::default()
        });
        let stream = tls_connect(https(&gw), "api.test", cfg).await.unwrap();
        let mut conn = Conn::over(stream).await.unwrap();
        for _ in 0..3 {
            let (_, answer) = conn.get("api.test", "/x").await.unwrap();
            assert_eq!(answer.status, StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    }
    assert_eq!(backend.hits(), 6);
}

#[tokio::test]
async fn tls12_and_tls13_accepted_tls11_refused() {
    let backend = Backend::echo("echo").await;
    let pki = Pki::new("Test CA");
    let api = pki.server(&["api.test"]);
    let gw = start(&config(backend.addr, CERT_A, "", ""), &pair("api", &api)).await;
    let addr = https(&gw);

    let s = tls_connect(addr, "api.test", trust(&pki)).await.unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let tls12 = client_config(ClientOpts {
        roots: vec![&pki],
        tls12_only: true,
        ..Default::default()
    });
    let s = tls_connect(addr, "api.test", tls12.clone()).await.unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let (_, answer) = Conn::over(s)
        .await
        .unwrap()
        .get("api.test", "/")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);

    // A TLS 1.1-only ClientHello gets a fatal protocol_version alert and the connection ends.
    let reply = raw_exchange(
        addr,
        &support::tls::tls11_client_hello(),
        Duration::from_secs(5),
    )
    .await
    .expect("connection closed");
    assert!(reply.len() >= 7, "{reply:?}");
    assert_eq!(reply[0], 0x15, "an alert record: {reply:?}");
    assert_eq!(&reply[5..7], &[2, 70], "fatal protocol_version: {reply:?}");

    // min_version = "1.3" refuses TLS 1.2 clients.
    let strict = start(
        &config(backend.addr, CERT_A, "min_version = \"1.3\"", ""),
        &pair("api", &api),
    )
    .await;
    assert!(
        tls_connect(https(&strict), "api.test", tls12)
            .await
            .is_err()
    );
    assert!(
        tls_connect(https(&strict), "api.test", trust(&pki))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn plaintext_garbage_and_silence_close_only_their_connection() {
    let backend = Backend::echo("echo").await;
    let pki = Pki::new("Test CA");
    let api = pki.server(&["api.test"]);
    let gw = start(
        &config(backend.addr, CERT_A, "handshake_timeout = \"300ms\"", ""),
        &pair("api", &api),
    )
    .await;
    let addr = https(&gw);
    let mut good = Conn::over(tls_connect(addr, "api.test", trust(&pki)).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        good.get("api.test", "/").await.unwrap().1.status,
        StatusCode::OK
    );

    let wait = Duration::from_secs(5);
    let plain = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n", wait)
        .await
        .expect("plaintext connection closed");
    let plain = String::from_utf8_lossy(&plain);
    assert!(plain.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{plain}");
    assert!(plain.contains("use https://"), "{plain}");

    let garbage = raw_exchange(addr, b"\x00\x01\x02garbage\xff\xfe", wait).await;
    assert_eq!(
        garbage.as_deref(),
        Some(&b""[..]),
        "garbage: closed without a word"
    );
    let bad_record = raw_exchange(addr, b"\x16\x03\x01\x00\x05hello", wait).await;
    assert!(
        bad_record.is_some(),
        "a broken TLS record closes the connection"
    );
    let hello = support::tls::tls11_client_hello();
    assert!(
        raw_exchange(addr, &hello[..20], wait).await.is_some(),
        "half a ClientHello times out"
    );
    assert!(
        raw_exchange(addr, b"", wait).await.is_some(),
        "a silent client times out"
    );

    // Nothing else was hurt: the open connection and new ones still work.
    assert_eq!(
        good.get("api.test", "/again").await.unwrap().1.status,
        StatusCode::OK
    );
    let fresh = https_get(addr, "api.test", trust(&pki), "/").await;
    assert_eq!(fresh.status, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gw.running().open_connections() != 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        gw.running().open_connections(),
        1,
        "only the good connection is left open"
    );
}

#[tokio::test]
async fn redirect_https_keeps_path_and_query_and_hsts_goes_on_https_only() {
    let backend = Backend::echo("echo").await;
    let pki = Pki::new("Test CA");
    let api = pki.server(&["api.test"]);
    let tls_extra =
        "redirect_https = true\nhsts = { max_age = \"365d\", include_subdomains = true }";
    let gw = start(
        &config(backend.addr, CERT_A, tls_extra, ""),
        &pair("api", &api),
    )
    .await;
    let port = https(&gw).port();
    let client = h1_client();

    let r = send_with(
        &client,
        Request::get(gw.url("/a/b?x=1&y=%20"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        r.header("location"),
        Some(format!("https://127.0.0.1:{port}/a/b?x=1&y=%20").as_str())
    );
    assert_eq!(
        r.header("strict-transport-security"),
        None,
        "never over plain HTTP"
    );

    let post = Request::post(gw.url("/form"))
        .header("host", "Shop.Example:8080")
        .body(Full::new(Bytes::from_static(b"a=1")))
        .unwrap();
    let r = send_with(&client, post).await;
    assert_eq!(
        r.status,
        StatusCode::PERMANENT_REDIRECT,
        "308 keeps the method"
    );
    assert_eq!(
        r.header("location"),
        Some(format!("https://shop.example:{port}/form").as_str())
    );

    let bad_host = Request::get(gw.url("/"))
        .header("host", "evil.test/x@y")
        .body(Full::default())
        .unwrap();
    assert_eq!(
        send_with(&client, bad_host).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        backend.hits(),
        0,
        "nothing on the plain listener reached the upstream"
    );

    let r = https_get(https(&gw), "api.test", trust(&pki), "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );

    // A public port in front (e.g. 443 mapped to this listener) goes into the Location.
    let with_port = format!("{tls_extra}\nredirect_port = 443");
    write(
        gw.dir.path(),
        "gateway.toml",
        &config(backend.addr, CERT_A, &with_port, ""),
    );
    gw.running().gateway.reload().expect("reload");
    let r = send_with(
        &client,
        Request::get(gw.url("/p?q")).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(r.header("location"), Some("https://127.0.0.1/p?q"));
}

fn mtls_config(backend: SocketAddr, tls_extra: &str, routes_extra: &str) -> String {
    let tls = format!(
        "client_ca = \"certs/clients.pem\"\nforward_client_cert = \"x-client-cert\"\n{tls_extra}"
    );
    config(backend, CERT_A, &tls, routes_extra)
}

async fn try_get(
    addr: SocketAddr,
    cfg: std::sync::Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<support::Answer, String> {
    let stream = tls_connect(addr, "api.test", cfg)
        .await
        .map_err(|e| e.to_string())?;
    let mut conn = Conn::over(stream).await.map_err(|e| e.to_string())?;
    let req = Request::get(path)
        .header("host", "api.test")
        .header("x-client-cert", "Hash=forged;Subject=\"CN=admin\"")
        .body(Full::default())
        .unwrap();
    conn.send(req)
        .await
        .map(|(_, a)| a)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn mtls_required_refuses_handshakes_without_a_valid_client_certificate() {
    let backend = Backend::echo("echo").await;
    let pki = Pki::new("Server CA");
    let clients = Pki::new("Clients CA");
    let api = pki.server(&["api.test"]);
    let alice = clients.client("alice", &["alice.example"]);
    let mallory = Pki::new("Rogue CA").client("mallory", &[]);
    let mut files = pair("api", &api).to_vec();
    files.push(("certs/clients.pem".into(), &clients.ca_pem));
    let gw = start(&mtls_config(backend.addr, "", ""), &files).await;
    let addr = https(&gw);

    assert!(
        try_get(addr, trust(&pki), "/").await.is_err(),
        "no client certificate"
    );
    let rogue = client_config(ClientOpts {
        roots: vec![&pki],
        identity: Some(&mallory),
        ..Default::default()
    });
    assert!(
        try_get(addr, rogue, "/").await.is_err(),
        "certificate from an unknown CA"
    );
    assert_eq!(backend.hits(), 0);

    let good = client_config(ClientOpts {
        roots: vec![&pki],
        identity: Some(&alice),
        ..Default::default()
    });
    let answer = try_get(addr, good, "/who")
        .await
        .expect("valid client certificate");
    assert_eq!(answer.status, StatusCode::OK);
    let echo = answer.json();
    let forwarded = header(&echo, "x-client-cert");
    assert_eq!(
        forwarded.len(),
        1,
        "the forged copy was removed: {forwarded:?}"
    );
    assert!(
        forwarded[0].contains("Subject=\"CN=alice\""),
        "{forwarded:?}"
    );
    assert!(forwarded[0].contains(";DNS=alice.example"), "{forwarded:?}");
    assert!(!forwarded[0].contains("forged"), "{forwarded:?}");
}

#[tokio::test]
async fn mtls_optional_lets_a_route_require_a_certificate() {
    let backend = Backend::echo("echo").await;
    let pki = Pki::new("Server CA");
    let clients = Pki::new("Clients CA");
    let api = pki.server(&["api.test"]);
    let alice = clients.client("alice", &[]);
    let mut files = pair("api", &api).to_vec();
    files.push(("certs/clients.pem".into(), &clients.ca_pem));
    let secure = "\n[[routes]]\nid = \"secure\"\nmatch = { path_prefix = \"/secure\" }\nupstream = \"echo\"\nclient_cert = \"required\"\n";
    let gw = start(
        &mtls_config(backend.addr, "client_auth = \"optional\"", secure),
        &files,
    )
    .await;
    let addr = https(&gw);

    let anonymous = trust(&pki);
    let open = try_get(addr, anonymous.clone(), "/open")
        .await
        .expect("optional: handshake ok");
    assert_eq!(open.status, StatusCode::OK);
    assert!(
        header(&open.json(), "x-client-cert").is_empty(),
        "forged header removed, none added"
    );
    let denied = try_get(addr, anonymous, "/secure").await.unwrap();
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        denied.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        denied.json()["type"],
        "https://portico.dev/problems/client-certificate-required"
    );

    let with_cert = client_config(ClientOpts {
        roots: vec![&pki],
        identity: Some(&alice),
        ..Default::default()
    });
    let ok = try_get(addr, with_cert, "/secure/x").await.unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    assert!(header(&ok.json(), "x-client-cert")[0].contains("CN=alice"));

    let plain = support::get(&gw.url("/secure")).await;
    assert_eq!(
        plain.status,
        StatusCode::FORBIDDEN,
        "the plain listener has no certificates"
    );
    assert_eq!(backend.hits(), 2);
}

#[tokio::test]
async fn new_certificate_files_serve_new_handshakes_while_open_connections_go_on() {
    let backend = Backend::echo("echo").await;
    let pki = Pki::new("Test CA");
    let old = pki.server(&["api.test"]);
    let new = pki.server(&["api.test"]);
    let gw = start(&config(backend.addr, CERT_A, "", ""), &pair("api", &old)).await;
    let addr = https(&gw);
    let rt = gw.running().gateway.runtime();
    for f in ["gateway.toml", "certs/api.pem", "certs/api.key"] {
        assert!(
            rt.sources.contains(&gw.dir.path().join(f)),
            "{f} in sources: {:?}",
            rt.sources
        );
    }

    // One client config keeps its session cache across connections.
    let client = trust(&pki);
    let stream = tls_connect(addr, "api.test", client.clone()).await.unwrap();
    assert_eq!(served_cert(&stream), old.der);
    let mut open = Conn::over(stream).await.unwrap();
    assert_eq!(
        open.get("api.test", "/1").await.unwrap().1.status,
        StatusCode::OK
    );

    // A reload that changes no TLS input keeps the TLS config, so session tickets stay valid.
    let same = gw.running().gateway.reload().expect("unchanged reload");
    let tls_config =
        |rt: &portico::runtime::Runtime| rt.tls.as_ref().unwrap().server_config.clone();
    assert!(std::sync::Arc::ptr_eq(&tls_config(&same), &tls_config(&rt)));
    let resumed = tls_connect(addr, "api.test", client.clone()).await.unwrap();
    assert_eq!(
        resumed.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );

    for (name, text) in pair("api", &new) {
        write(gw.dir.path(), &name, text);
    }
    let before = gw.running().gateway.runtime().version.clone();
    let reloaded = gw
        .running()
        .gateway
        .reload()
        .expect("reload with new certificate files");
    assert_ne!(
        reloaded.version, before,
        "the config version covers certificate contents"
    );

    assert!(!std::sync::Arc::ptr_eq(
        &tls_config(&reloaded),
        &tls_config(&rt)
    ));
    let fresh = tls_connect(addr, "api.test", client).await.unwrap();
    assert_eq!(
        fresh.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    assert_eq!(
        served_cert(&fresh),
        new.der,
        "new handshakes get the new certificate"
    );
    assert_eq!(
        open.get("api.test", "/2").await.unwrap().1.status,
        StatusCode::OK,
        "open connection goes on"
    );
}

#[tokio::test]
async fn a_broken_replacement_keeps_the_old_certificate_and_names_the_problem() {
    let backend = Backend::echo("echo").await;
    let pki = Pki::new("Test CA");
    let old = pki.server(&["api.test"]);
    let other = pki.server(&["api.test"]);
    let expired = pki.expired(&["api.test"]);
    let gw = start(&config(backend.addr, CERT_A, "", ""), &pair("api", &old)).await;
    let dir = gw.dir.path();
    let gateway = &gw.running().gateway;

    let cases: [(&str, &str, &str, &str); 5] = [
        (
            "not PEM",
            "hello, I am not a certificate",
            old.key_pem.as_str(),
            "api.pem: not PEM",
        ),
        (
            "key mismatch",
            &old.cert_pem,
            &other.key_pem,
            "api.key: private key does not match the certificate in",
        ),
        (
            "no key",
            &old.cert_pem,
            &old.cert_pem,
            "api.key: no private key",
        ),
        ("expired", &expired.cert_pem, &expired.key_pem, "expired on"),
        (
            "truncated",
            &old.cert_pem[..old.cert_pem.len() - 40],
            &old.key_pem,
            "api.pem: a PEM block has no END line",
        ),
    ];
    for (case, cert, key, want) in cases {
        write(dir, "certs/api.pem", cert);
        write(dir, "certs/api.key", key);
        let err = gateway.reload().expect_err(case).to_string();
        assert!(err.contains(want), "{case}: {err}");
        assert!(
            err.contains("gateway.toml:7:"),
            "{case}: points at the entry in gateway.toml: {err}"
        );
        assert!(err.contains("server.tls.certificates[0]"), "{case}: {err}");
        assert_eq!(gateway.generation(), 1, "{case}: old config kept");
        let s = tls_connect(https(&gw), "api.test", trust(&pki))
            .await
            .unwrap();
        assert_eq!(
            served_cert(&s),
            old.der,
            "{case}: old certificate still served"
        );
    }
    for (name, text) in pair("api", &other) {
        write(dir, &name, text);
    }
    gateway.reload().expect("a good replacement loads");
    let s = tls_connect(https(&gw), "api.test", trust(&pki))
        .await
        .unwrap();
    assert_eq!(served_cert(&s), other.der);
}

#[tokio::test]
async fn tls_config_errors_point_at_file_line_and_key() {
    let pki = Pki::new("Test CA");
    let api = pki.server(&["api.test"]);
    let no_dns = pki.server(&["127.0.0.2"]);
    let dir = tempfile::tempdir().unwrap();
    for (n, t) in pair("api", &api).into_iter().chain(pair("ip", &no_dns)) {
        write(dir.path(), &n, t);
    }
    // The builder keeps `[server]` to its two lines: the positions below count on it.
    let toml = support::config().admin_unset().toml(
        r#"
[server.tls]
listen = "127.0.0.1:0"
certificates = [ { cert = "certs/api.pem", key = "certs/api.key" }, { cert = "certs/ip.pem", key = "certs/ip.key" }, { cert = "certs/missing.pem" } ]
client_auth = "optional"
forward_client_cert = "x-client-cert"
min_version = "1.1"
handshake_timeout = "0"
redirect_port = 70000
hsts = { preload = true }

[upstreams.u]
endpoints = ["127.0.0.1:9"]

[[routes]]
id = "r"
match = { path_prefix = "/" }
upstream = "u"
client_cert = "mandatory"

[[routes]]
id = "s"
match = { path_prefix = "/s" }
upstream = "u"
client_cert = "required"
"#,
    );
    write(dir.path(), "gateway.toml", &toml.build());
    let err = support::load_errors_in(dir.path());
    let expect = [
        (
            "6:",
            "server.tls.certificates[1]",
            "no DNS name in subjectAltName",
        ),
        (
            "6:",
            "server.tls.certificates[2].cert",
            "missing.pem: cannot read file",
        ),
        ("7:15", "server.tls.client_auth", "needs `client_ca`"),
        (
            "8:23",
            "server.tls.forward_client_cert",
            "needs `client_ca`",
        ),
        (
            "9:15",
            "server.tls.min_version",
            "unknown TLS version \"1.1\"",
        ),
        ("10:21", "server.tls.handshake_timeout", "more than 0"),
        ("11:17", "server.tls.redirect_port", "between 1 and 65535"),
        (
            "12:8",
            "server.tls.hsts",
            "preload needs include_subdomains",
        ),
        (
            "21:15",
            "routes[0].client_cert",
            "unknown value \"mandatory\"",
        ),
        (
            "27:15",
            "routes[1].client_cert",
            "needs `server.tls.client_ca`",
        ),
    ];
    support::assert_errors_at(&err, &expect);
}

#[tokio::test]
async fn portico_check_lists_certificates_and_names_a_broken_file() {
    let pki = Pki::new("Test CA");
    let api = pki.server(&["api.test", "*.api.test"]);
    let dir = tempfile::tempdir().unwrap();
    for (n, t) in pair("api", &api) {
        write(dir.path(), &n, t);
    }
    let toml = config("127.0.0.1:9".parse().unwrap(), CERT_A, "", "");
    write(dir.path(), "gateway.toml", &toml);
    let path = dir.path().join("gateway.toml");
    let (code, out, err) = support::portico_cli(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("api.pem: api.test, *.api.test [default]; expires in"),
        "{out}"
    );

    write(
        dir.path(),
        "certs/api.key",
        "-----BEGIN PRIVATE KEY-----\nnot base64!\n",
    );
    let (code, _, err) = support::portico_cli(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("gateway.toml:7:"), "{err}");
    assert!(err.contains("api.key: a PEM block"), "{err}");
}
