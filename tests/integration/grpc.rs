//! gRPC end to end with real peers (Python grpcio + grpcio-health-checking, see .ci/deps):
//! a grpcio server behind an `h2` upstream, a grpcio client over h2c and over TLS; unary,
//! server streaming and the health service; gateway errors as gRPC statuses.

use crate::support;

use std::net::SocketAddr;

use serde_json::Value;
use support::tls::Pki;
use support::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

fn script() -> String {
    python_script("grpc_peer.py")
}

fn need_grpcio() {
    need_python_modules(
        "grpc, grpc_health.v1.health",
        "Python grpcio / grpcio-health-checking are missing: run .ci/deps",
    );
}

fn grpc_server() -> PyServer {
    need_grpcio();
    PyServer::start("grpc_peer.py")
}

/// One grpcio client call; its JSON line.
async fn call(target: SocketAddr, method: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        script(),
        "call".into(),
        target.to_string(),
        method.to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = tokio::process::Command::new("python3")
        .args(&args)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "grpc_peer {method}: {e}: {text:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A gateway whose every route goes to `upstream` over h2; `auth` adds a JWT check; with
/// `tls` an HTTPS listener serves a certificate for `localhost` from `pki`.
async fn gateway(upstream: SocketAddr, auth: bool, pki: Option<&Pki>) -> TestGateway {
    let mut toml = config().no_access_log();
    if pki.is_some() {
        toml = toml.toml(
            "[server.tls]\nlisten = \"127.0.0.1:0\"\ncertificates = [ { cert = \"certs/api.pem\", key = \"certs/api.key\" } ]",
        );
    }
    let toml = toml
        .upstream_with("grpc", &[upstream], "protocol = \"h2\"\ntimeout = \"5s\"")
        .provider(
            "hs",
            "https://issuer.test",
            &["HS256"],
            "secret_file = \"hs.secret\"",
        )
        .route_with(
            "grpc",
            "/",
            "grpc",
            if auth {
                "auth = { provider = \"hs\" }"
            } else {
                ""
            },
        )
        .build();
    let leaf = pki.map(|p| p.server(&["localhost"]));
    let mut files = vec![("hs.secret", SECRET)];
    if let Some(l) = &leaf {
        files.push(("certs/api.pem", l.cert_pem.as_str()));
        files.push(("certs/api.key", l.key_pem.as_str()));
    }
    TestGateway::start_with_files(&toml, &files).await
}

#[tokio::test]
async fn unary_streaming_and_health_over_h2c() {
    let server = grpc_server();
    let gw = gateway(server.addr, false, None).await;
    assert_eq!(call(gw.addr, "unary", &[]).await["ok"], "hello");
    assert_eq!(
        call(gw.addr, "stream", &[]).await["ok"],
        serde_json::json!(["m0", "m1", "m2"])
    );
    assert_eq!(call(gw.addr, "health", &[]).await["ok"], "SERVING");
}

#[tokio::test]
async fn unary_and_streaming_over_tls() {
    let server = grpc_server();
    let pki = Pki::new("grpc test CA");
    let gw = gateway(server.addr, false, Some(&pki)).await;
    let https = gw.running().https_addr().expect("an HTTPS listener");
    let ca = gw.dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let ca = ca.to_string_lossy().into_owned();
    assert_eq!(call(https, "unary", &["--ca", &ca]).await["ok"], "hello");
    assert_eq!(
        call(https, "stream", &["--ca", &ca]).await["ok"],
        serde_json::json!(["m0", "m1", "m2"])
    );
}

#[tokio::test]
async fn dead_upstream_is_unavailable() {
    let gw = gateway(dead_addr().await, false, None).await;
    need_grpcio();
    let out = call(gw.addr, "unary", &[]).await;
    assert_eq!(out["code"], 14, "{out}");
}

#[tokio::test]
async fn missing_token_is_unauthenticated() {
    let server = grpc_server();
    let gw = gateway(server.addr, true, None).await;
    let out = call(gw.addr, "unary", &[]).await;
    assert_eq!(out["code"], 16, "{out}");
    let token = hs256(
        SECRET,
        &serde_json::json!({"iss": "https://issuer.test", "aud": "portico", "sub": "u1",
                            "exp": unix_now() + 600}),
    );
    assert_eq!(
        call(gw.addr, "unary", &["--token", &token]).await["ok"],
        "hello"
    );
}

#[tokio::test]
async fn deadline_ends_a_slow_call() {
    let server = grpc_server();
    let gw = gateway(server.addr, false, None).await;
    let out = call(gw.addr, "slow", &["--timeout", "0.1"]).await;
    assert_eq!(out["code"], 4, "{out}");
    // ~0.1 s idle; generous on a loaded box, far below the 3 s the method takes.
    assert!(out["secs"].as_f64().unwrap() < 1.0, "{out}");
}
