//! `portico check` on the discovery tables: every source shape passes without contacting
//! anything (the resolver and etcd addresses here answer nothing), and each bad table is
//! reported at its file:line:col and key.

use crate::support;

use std::time::{Duration, Instant};

use support::*;

#[test]
fn every_source_passes_check_without_contacting_anything() {
    let text = r#"[server]
listen = "127.0.0.1:0"

[discovery]
resolvers = ["127.0.0.1:9"]
registry_file = "registry.json"

[discovery.etcd]
endpoints = ["http://127.0.0.1:9"]

[upstreams.reg]
discovery = { registry = true }

[upstreams.dns]
endpoints = ["127.0.0.1:7001"]
discovery = { dns = "orders.internal:8080", min_ttl = "2s", max_ttl = "30s" }

[upstreams.srv]
discovery = { srv = "_http._tcp.orders.internal" }

[upstreams.etcd]
discovery = { etcd = "/services/orders/" }
"#;
    let started = Instant::now();
    let (code, out, err) = check_config(text, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("4 upstreams"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn bad_discovery_tables_are_reported_at_their_keys() {
    let text = r#"[server]
listen = "127.0.0.1:0"

[discovery]
resolvers = ["nope"]

[upstreams.two]
discovery = { registry = true, dns = "a:1" }

[upstreams.noport]
discovery = { dns = "orders.internal" }

[upstreams.prefix]
discovery = { etcd = "/services/orders" }

[upstreams.noetcd]
discovery = { etcd = "/services/x/" }

[upstreams.srv]
discovery = { srv = "orders.internal" }

[upstreams.ttl]
discovery = { dns = "orders.internal:80", min_ttl = "10s", max_ttl = "5s" }

[upstreams.none]
discovery = { registry = true, min_ttl = "1s" }
"#;
    let (code, out, err) = check_config(text, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert_errors_at(
        &err,
        &[
            ("5:14", "discovery.resolvers", "bad address \"nope\""),
            ("8:13", "upstreams.two.discovery", "exactly one source"),
            (
                "11:21",
                "upstreams.noport.discovery.dns",
                "needs a host and a port",
            ),
            (
                "14:22",
                "upstreams.prefix.discovery.etcd",
                "starts and ends with `/`",
            ),
            (
                "17:22",
                "upstreams.noetcd.discovery.etcd",
                "[discovery.etcd] endpoints",
            ),
            ("20:21", "upstreams.srv.discovery.srv", "not an SRV name"),
            (
                "23:53",
                "upstreams.ttl.discovery.min_ttl",
                "at most max_ttl",
            ),
            (
                "26:42",
                "upstreams.none.discovery",
                "apply to dns and srv only",
            ),
        ],
    );
}

#[test]
fn an_empty_etcd_endpoint_list_is_reported() {
    let text = r#"[server]
listen = "127.0.0.1:0"

[discovery.etcd]
endpoints = []

[upstreams.etcd]
discovery = { etcd = "/services/orders/" }
"#;
    let (code, out, err) = check_config(text, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert_errors_at(
        &err,
        &[(
            "5:13",
            "discovery.etcd.endpoints",
            "lists no etcd client URL",
        )],
    );
}
