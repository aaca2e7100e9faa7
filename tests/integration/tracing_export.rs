//! OTLP export: a test collector (a small HTTP server decoding the protobuf with its own
//! message definitions, written from the opentelemetry-proto files) receives one SERVER span
//! per request and one CLIENT span per upstream attempt with correct parent links, a span per
//! BFF part plus the aggregation span, and a collector that hangs neither slows requests nor
//! goes unnoticed (drops are counted).

use crate::support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use http_body_util::BodyExt;
use prost::Message;
use support::*;

/// The collector side of OTLP/HTTP: `opentelemetry/proto/collector/trace/v1` and friends.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        #[prost(string, tag = "3")]
        pub trace_state: String,
        #[prost(bytes = "vec", tag = "4")]
        pub parent_span_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(int32, tag = "6")]
        pub kind: i32,
        #[prost(fixed64, tag = "7")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "8")]
        pub end_time_unix_nano: u64,
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        #[prost(message, optional, tag = "15")]
        pub status: Option<Status>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(int32, tag = "3")]
        pub code: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "Value", tags = "1, 2, 3")]
        pub value: Option<Value>,
    }
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        Str(String),
        #[prost(bool, tag = "2")]
        Bool(bool),
        #[prost(int64, tag = "3")]
        Int(i64),
    }
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const INTERNAL: i32 = 1;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr(s: &proto::Span, key: &str) -> Option<proto::Value> {
    s.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone()?.value)
}

fn attr_str(s: &proto::Span, key: &str) -> Option<String> {
    match attr(s, key)? {
        proto::Value::Str(v) => Some(v),
        _ => None,
    }
}

fn attr_int(s: &proto::Span, key: &str) -> Option<i64> {
    match attr(s, key)? {
        proto::Value::Int(v) => Some(v),
        _ => None,
    }
}

/// A collector on 127.0.0.1:0 that keeps every span it decodes (and the service name).
struct Collector {
    backend: Backend,
    spans: Arc<Mutex<Vec<proto::Span>>>,
    services: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    async fn start() -> Collector {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let services = Arc::new(Mutex::new(Vec::new()));
        let (s, n) = (spans.clone(), services.clone());
        let backend = Backend::start(move |req: http::Request<hyper::body::Incoming>| {
            let (s, n) = (s.clone(), n.clone());
            async move {
                assert_eq!(req.uri().path(), "/v1/traces");
                assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let export = proto::ExportTraceServiceRequest::decode(body).expect("valid OTLP");
                for rs in export.resource_spans {
                    for a in rs.resource.iter().flat_map(|r| r.attributes.iter()) {
                        if let (true, Some(proto::Value::Str(v))) = (
                            a.key == "service.name",
                            a.value.clone().and_then(|v| v.value),
                        ) {
                            n.lock().unwrap().push(v);
                        }
                    }
                    for ss in rs.scope_spans {
                        s.lock().unwrap().extend(ss.spans);
                    }
                }
                http::Response::new(full(""))
            }
        })
        .await;
        Collector {
            backend,
            spans,
            services,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/v1/traces", self.backend.addr)
    }

    /// Waits (bounded) until `enough` holds for the spans received so far.
    async fn wait(&self, enough: impl Fn(&[proto::Span]) -> bool) -> Vec<proto::Span> {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if enough(&spans) {
                return spans;
            }
            assert!(Instant::now() < until, "spans so far: {spans:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn tracing_table(endpoint: &str, extra: &str) -> String {
    format!(
        "[tracing]\notlp_endpoint = \"{endpoint}\"\nsample_ratio = 1.0\nservice_name = \"edge-test\"\nflush_interval = \"20ms\"\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_client_spans_per_attempt_with_parent_links() {
    let collector = Collector::start().await;
    let app = Backend::echo("app").await;
    let dead = dead_addr().await;
    // The dead endpoint is picked first (weight), refuses, and the request fails over.
    let toml = support::config()
        .toml(&format!(
            "[upstreams.app]\nendpoints = [{{ address = \"{dead}\", weight = 100 }}, \"{}\"]",
            app.addr
        ))
        .route("app", "/app", "app")
        .toml(&tracing_table(&collector.url(), ""))
        .build();
    let gw = TestGateway::start(&toml).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let a = get_with(
        &gw.url("/app/x"),
        &[("traceparent", parent), ("tracestate", "k=v")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let sent = a.json()["headers"]["traceparent"][0]
        .as_str()
        .unwrap()
        .to_owned();

    let spans = collector
        .wait(|s| {
            s.iter().any(|x| x.kind == SERVER) && s.iter().filter(|x| x.kind == CLIENT).count() >= 2
        })
        .await;
    let server: Vec<_> = spans.iter().filter(|s| s.kind == SERVER).collect();
    assert_eq!(server.len(), 1, "{spans:#?}");
    let server = server[0];
    assert_eq!(server.name, "GET app");
    assert_eq!(hex(&server.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        hex(&server.parent_span_id),
        "00f067aa0ba902b7",
        "child of the caller's span"
    );
    assert_eq!(server.trace_state, "k=v");
    assert_eq!(
        attr_str(server, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(attr_str(server, "http.route").as_deref(), Some("app"));
    assert_eq!(attr_str(server, "url.path").as_deref(), Some("/app/x"));
    assert_eq!(attr_int(server, "http.response.status_code"), Some(200));
    assert_eq!(attr_str(server, "portico.upstream").as_deref(), Some("app"));
    assert!(server.end_time_unix_nano >= server.start_time_unix_nano);

    let mut clients: Vec<_> = spans.iter().filter(|s| s.kind == CLIENT).collect();
    clients.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(clients.len(), 2, "one CLIENT span per attempt: {spans:#?}");
    for c in &clients {
        assert_eq!(c.trace_id, server.trace_id);
        assert_eq!(
            c.parent_span_id, server.span_id,
            "attempts hang under the SERVER span"
        );
        assert_ne!(c.span_id, server.span_id);
        assert_eq!(c.name, "GET app");
        assert_eq!(attr_str(c, "portico.upstream").as_deref(), Some("app"));
    }
    assert_ne!(clients[0].span_id, clients[1].span_id);
    assert_eq!(
        attr_str(clients[0], "error.type").as_deref(),
        Some("connect")
    );
    assert_eq!(clients[0].status.as_ref().map(|s| s.code), Some(2));
    assert_eq!(attr_int(clients[0], "http.request.resend_count"), None);
    assert_eq!(attr_int(clients[1], "http.request.resend_count"), Some(1));
    assert_eq!(attr_int(clients[1], "http.response.status_code"), Some(200));
    // The backend saw the second attempt's own span id.
    assert_eq!(
        sent,
        format!(
            "00-{}-{}-01",
            hex(&server.trace_id),
            hex(&clients[1].span_id)
        )
    );
    assert_eq!(collector.services.lock().unwrap()[0], "edge-test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bff_request_gives_a_span_per_part_and_one_for_the_aggregation() {
    let collector = Collector::start().await;
    let users =
        Backend::start(|_req| async { json_response(200, serde_json::json!({"id": 7})) }).await;
    let orders =
        Backend::start(|_req| async { json_response(200, serde_json::json!({"items": []})) }).await;
    let toml = support::config()
        .upstream("users", &[users.addr])
        .upstream("orders", &[orders.addr])
        .toml(&tracing_table(&collector.url(), ""))
        .build();
    let bff = profile("/t")
        .endpoint("/home")
        .part("user", "users", "/users/7", "")
        .part("orders", "orders", "/orders", "")
        .build();
    let gw = TestGateway::start_with_files(&toml, &[("bff/t.toml", &bff)]).await;
    let a = get(&gw.url("/t/home")).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);

    let spans = collector
        .wait(|s| {
            s.iter().any(|x| x.kind == SERVER) && s.iter().filter(|x| x.kind == CLIENT).count() >= 2
        })
        .await;
    let server = spans.iter().find(|s| s.kind == SERVER).unwrap();
    let aggregate: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == INTERNAL && s.name.starts_with("aggregate"))
        .collect();
    assert_eq!(aggregate.len(), 1, "{spans:#?}");
    let aggregate = aggregate[0];
    assert_eq!(aggregate.parent_span_id, server.span_id);
    let parts: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == INTERNAL && s.name.starts_with("part "))
        .collect();
    let mut names: Vec<_> = parts.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["part orders", "part user"], "{spans:#?}");
    for p in &parts {
        assert_eq!(
            p.parent_span_id, aggregate.span_id,
            "parts hang under the aggregation"
        );
        assert_eq!(p.trace_id, server.trace_id);
        let calls: Vec<_> = spans
            .iter()
            .filter(|c| c.kind == CLIENT && c.parent_span_id == p.span_id)
            .collect();
        assert_eq!(calls.len(), 1, "one CLIENT span under {}", p.name);
        let upstream = attr_str(p, "portico.upstream").unwrap();
        assert_eq!(attr_str(calls[0], "portico.upstream"), Some(upstream));
    }
}

/// A collector that accepts connections and never answers.
async fn hanging_collector() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

async fn time_requests(gw: &TestGateway, n: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        assert_eq!(get(&gw.url("/app/x")).await.status, StatusCode::OK);
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_collector_does_not_slow_requests_and_drops_are_counted() {
    let app = Backend::echo("app").await;
    let base = support::config()
        .admin()
        .upstream("app", &[app.addr])
        .route("app", "/app", "app");
    let (addr, _task) = hanging_collector().await;
    let hanging = base
        .clone()
        .toml(&tracing_table(
            &format!("http://{addr}/v1/traces"),
            "queue_size = 8\nbatch_size = 4\nexport_timeout = \"30s\"",
        ))
        .build();
    let plain = TestGateway::start(&base.build()).await;
    let traced = TestGateway::start(&hanging).await;
    // Warm both (connections, pools), then compare.
    time_requests(&plain, 5).await;
    time_requests(&traced, 5).await;
    let n = 200;
    let without = time_requests(&plain, n).await;
    let with = time_requests(&traced, n).await;
    eprintln!("{n} requests: {without:?} without tracing, {with:?} with a hanging collector");
    assert!(
        with < without * 3 + Duration::from_millis(500),
        "{n} requests took {with:?} with a hanging collector, {without:?} without tracing"
    );
    // 2 spans per request, the queue holds 8 and the export never finishes: the rest dropped.
    let m = scrape(traced.running()).await;
    let dropped = metric(&m, "portico_spans_dropped_total", &[]).unwrap_or(0.0);
    assert!(
        dropped >= (2 * (n + 5) - 8 - 4) as f64 - 0.5,
        "dropped {dropped}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_has_a_server_span_with_the_decision_and_no_client_span() {
    let collector = Collector::start().await;
    let app = Backend::echo("app").await;
    let toml = support::config()
        .upstream("app", &[app.addr])
        .toml("[rate_limits.tight]\nrate = \"1/m\"\nburst = 1\nkey = \"ip\"")
        .route_with("tight", "/tight", "app", "rate_limit = \"tight\"")
        .toml(&tracing_table(&collector.url(), ""))
        .build();
    let gw = TestGateway::start(&toml).await;
    assert_eq!(get(&gw.url("/tight")).await.status, StatusCode::OK);
    assert_eq!(
        get(&gw.url("/tight")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let spans = collector
        .wait(|s| s.iter().filter(|x| x.kind == SERVER).count() >= 2)
        .await;
    let refused = spans
        .iter()
        .find(|s| s.kind == SERVER && attr_int(s, "http.response.status_code") == Some(429))
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(refused.name, "GET tight");
    assert_eq!(
        attr_str(refused, "portico.rate_limit").as_deref(),
        Some("refused")
    );
    assert_eq!(
        attr_str(refused, "error.type").as_deref(),
        Some("rate-limited")
    );
    // A 4xx is not a SERVER span error.
    assert_ne!(refused.status.as_ref().map(|s| s.code), Some(2));
    assert!(
        !spans
            .iter()
            .any(|s| s.kind == CLIENT && s.parent_span_id == refused.span_id),
        "nothing was sent upstream"
    );
    assert_eq!(spans.iter().filter(|s| s.kind == CLIENT).count(), 1);
}
