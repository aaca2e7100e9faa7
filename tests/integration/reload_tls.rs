//! Reload and the HTTPS listener: a certificate file the config references is watched (a
//! renewed certificate reloads), and a changed `tls.listen` needs a restart.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use support::tls::Pki;
use support::*;

fn config(backend: SocketAddr, tls_listen: &str) -> String {
    let tls = format!(
        "[server.tls]\nlisten = \"{tls_listen}\"\ncertificates = [ {{ cert = \"certs/api.pem\", key = \"certs/api.key\" }} ]"
    );
    support::config()
        .admin()
        .toml(&tls)
        .upstream("app", &[backend])
        .route("all", "/", "app")
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_reloads_and_a_new_tls_address_needs_a_restart() {
    let backend = Backend::echo("app").await;
    let pki = Pki::new("Test CA");
    let first = pki.server(&["localhost"]);
    let gw = TestGateway::start_with_files(
        &config(backend.addr, "127.0.0.1:0"),
        &[
            ("certs/api.pem", &first.cert_pem),
            ("certs/api.key", &first.key_pem),
        ],
    )
    .await;
    let running = gw.running();
    let sources = running.gateway.runtime().sources.clone();
    assert!(
        sources.iter().any(|p| p.ends_with("certs/api.pem")),
        "{sources:?}"
    );
    let version = running.gateway.runtime().version.clone();
    let mut rx = running.gateway.reload_status();

    // Renewal as cert tools do it: new key and certificate saved by rename into certs/.
    let renewed = pki.server(&["localhost"]);
    let certs = gw.dir.path().join("certs");
    save_atomically(&certs.join("api.key"), &renewed.key_pem);
    save_atomically(&certs.join("api.pem"), &renewed.cert_pem);
    let mut status = next_reload(&mut rx, Duration::from_secs(5)).await;
    if status.errors.is_some() {
        // The key landed before its certificate (a mismatched pair is refused): the next event wins.
        status = next_reload(&mut rx, Duration::from_secs(5)).await;
    }
    assert!(status.errors.is_none(), "{:?}", status.errors);
    assert_ne!(
        running.gateway.runtime().version,
        version,
        "certificate bytes are part of the version"
    );

    // Moving the HTTPS listener needs a restart: refused whole, the old config keeps serving.
    let other = dead_addr().await;
    std::fs::write(gw.config_path(), config(backend.addr, &other.to_string())).unwrap();
    let a = admin_post(running, "/admin/reload").await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let e = &a.json()["errors"][0];
    assert_eq!(e["key"], "server.tls.listen", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("needs a restart"),
        "{e}"
    );
    assert_eq!(get(&gw.url("/x")).await.status, StatusCode::OK);
}
