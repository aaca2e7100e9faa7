//! The integration suite: one test binary, so the gateway and its dependencies are linked once
//! (79 binaries took about 7 GB of disk and a link each). Each module is one concern; all of them
//! start the real gateway and real backends on 127.0.0.1:0 through the shared harness in
//! `tests/support/`. Run one concern with `cargo test --test integration <module>::`.
//! `tests/alloc_count.rs` stays a binary of its own: it installs a counting global allocator.

#[path = "../support/mod.rs"]
mod support;

mod access_log;
mod admin;
mod auth;
mod auth_reload;
mod balance;
mod bff_auth;
mod bff_budget;
mod bff_cache;
mod bff_config;
mod bff_faults;
mod bff_profiles;
mod check;
mod check_report;
mod cli;
mod cluster_rate_limit;
mod compression;
mod cqrs;
mod discovery_check;
mod discovery_dns;
mod discovery_etcd;
mod discovery_registry;
mod docs_walkthrough;
mod edge_api_key;
mod edge_bff_etag;
mod edge_check;
mod edge_cors;
mod edge_ip_list;
mod fixed_backend;
mod gateway_fields;
mod grpc;
mod hardening_body;
mod hardening_corpus;
mod hardening_headers;
mod hardening_path;
mod hardening_timeouts;
mod hardening_upgrade;
mod health;
mod http_head;
mod idle_release;
mod layers;
mod lifecycle;
mod limits;
mod load_tests_scripts;
mod metrics_series;
mod problem_types;
mod protocols;
mod proxy;
mod rate_limit;
mod reload;
mod reload_soak;
mod reload_summary;
mod reload_tls;
mod resilience;
mod route_answer;
mod saga_log;
mod sagas;
mod scripts;
mod server_h1;
mod status_page;
mod tls_listener;
mod tls_upstream;
mod tracing;
mod tracing_check;
mod tracing_export;
mod traffic_bluegreen;
mod traffic_check;
mod traffic_fault;
mod traffic_match;
mod traffic_mirror;
mod traffic_split;
mod upstream_h1_errors;
mod upstream_h1_framing;
mod upstream_host;
mod upstream_pool;
mod websocket;
