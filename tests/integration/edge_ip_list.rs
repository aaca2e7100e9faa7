//! `[ip_lists.NAME]`: allow and deny lists (IPv4 and IPv6) on routes, BFF profiles and the
//! admin listener, checked on the real client address (`X-Forwarded-For` only from a trusted
//! proxy), refused with 403 problem+json, swapped whole on reload.

use crate::support;

use support::*;

fn gateway_toml(backend: &Backend, trusted: &str, office: &str) -> String {
    support::config()
        .no_access_log()
        .admin()
        .server(trusted)
        .upstream("echo", &[backend.addr])
        .toml(&format!(
            r#"[ip_lists.office]
allow = {office}

[ip_lists.blocked]
deny = ["203.0.113.0/24", "2001:db8:bad::/48"]"#
        ))
        .route_with("office", "/office", "echo", "ip_list = \"office\"")
        .route_with("public", "/public", "echo", "ip_list = \"blocked\"")
        .route("open", "/open", "echo")
        .build()
}

const OFFICE: &str = r#"["10.0.0.0/8", "127.0.0.0/8", "2001:db8::/32"]"#;

fn assert_denied(a: &Answer) {
    assert_eq!(a.status, 403, "{:?}", a.body);
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    assert_eq!(a.json()["type"], "https://portico.dev/problems/ip-denied");
}

#[tokio::test]
async fn peer_address_decides_without_a_trusted_proxy() {
    let backend = Backend::echo("echo").await;
    let gw = TestGateway::start(&gateway_toml(&backend, "", OFFICE)).await;

    // The test client is 127.0.0.1: inside the office allow list, outside the deny list.
    assert_eq!(get(&gw.url("/office/a")).await.status, 200);
    assert_eq!(get(&gw.url("/public/a")).await.status, 200);
    // Without a trusted proxy X-Forwarded-For is the client's word: ignored.
    let a = get_with(&gw.url("/public/a"), &[("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!(a.status, 200);
    let a = get_with(&gw.url("/office/a"), &[("x-forwarded-for", "8.8.8.8")]).await;
    assert_eq!(a.status, 200);
    let hits = backend.hits();

    // An allow list without the peer's network refuses it.
    let backend2 = Backend::echo("echo").await;
    let gw2 = TestGateway::start(&gateway_toml(&backend2, "", r#"["10.0.0.0/8", "::1"]"#)).await;
    assert_denied(&get(&gw2.url("/office/a")).await);
    assert_eq!(get(&gw2.url("/open/a")).await.status, 200);
    assert_eq!(
        backend2.hits(),
        1,
        "a refused request never reaches the upstream"
    );
    assert_eq!(backend.hits(), hits);
}

#[tokio::test]
async fn forwarded_client_decides_behind_a_trusted_proxy() {
    let backend = Backend::echo("echo").await;
    let gw = TestGateway::start(&gateway_toml(
        &backend,
        "trusted_proxies = [\"127.0.0.1\"]",
        OFFICE,
    ))
    .await;

    for (client, office, public) in [
        ("10.1.2.3", 200, 200),
        ("8.8.8.8", 403, 200),
        ("203.0.113.77", 403, 403),
        ("2001:db8::1", 200, 200),
        ("2001:db8:bad::7", 200, 403),
        ("2001:db9::1", 403, 200),
        ("::ffff:10.9.9.9", 200, 200),
    ] {
        let h = [("x-forwarded-for", client)];
        let a = get_with(&gw.url("/office/x"), &h).await;
        assert_eq!(a.status, office, "office list, client {client}");
        if office == 403 {
            assert_denied(&a);
        }
        let a = get_with(&gw.url("/public/x"), &h).await;
        assert_eq!(a.status, public, "blocked list, client {client}");
    }
    // The rightmost untrusted hop is the client: a spoofed leftmost entry does not help.
    let a = get_with(
        &gw.url("/office/x"),
        &[("x-forwarded-for", "10.0.0.1, 8.8.8.8")],
    )
    .await;
    assert_eq!(a.status, 403);
}

#[tokio::test]
async fn admin_listener_ip_list_and_reload_swap() {
    let backend = Backend::echo("echo").await;
    let open = gateway_toml(&backend, "admin_ip_list = \"office\"", OFFICE);
    let gw = TestGateway::start(&open).await;
    assert_eq!(admin_get(gw.running(), "/admin/routes").await.status, 200);

    // Reload with a list that leaves loopback out: the route and admin listener refuse at once.
    let closed = gateway_toml(&backend, "admin_ip_list = \"office\"", r#"["10.0.0.0/8"]"#);
    save_atomically(&gw.config_path(), &closed);
    let reloaded = admin_post(gw.running(), "/admin/reload").await;
    assert_eq!(reloaded.status, 200, "{:?}", reloaded.body);
    assert_denied(&get(&gw.url("/office/a")).await);
    let a = admin_get(gw.running(), "/admin/routes").await;
    assert_denied(&a);
    assert_denied(&admin_get(gw.running(), "/metrics").await);
    assert_eq!(get(&gw.url("/open/a")).await.status, 200);
}

#[tokio::test]
async fn bff_profile_ip_list() {
    let backend = Backend::echo("echo").await;
    let g = support::config()
        .no_access_log()
        .upstream("echo", &[backend.addr])
        .toml("[ip_lists.nobody_local]\ndeny = [\"127.0.0.0/8\", \"::1\"]")
        .build();
    let p = profile("/web")
        .keys("ip_list = \"nobody_local\"")
        .endpoint("/home")
        .part("me", "echo", "/me", "required = true")
        .build();
    let gw = TestGateway::start_with_files(&g, &[("bff/web.toml", &p)]).await;
    assert_denied(&get(&gw.url("/web/home")).await);
    assert_eq!(backend.hits(), 0);
}
