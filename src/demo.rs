//! Built-in demo upstreams (users, orders, catalog): deterministic JSON on loopback so the
//! shipped gateway.toml answers at once. Not for production traffic.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Which demo service an address serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// `/users`, `/users/{id}`.
    Users,
    /// `/orders?user=ID`, `/orders/{id}`.
    Orders,
    /// `/recommendations?segment=S`, `/products/{id}`.
    Catalog,
}

impl App {
    /// The demo app for an upstream name, if there is one.
    pub fn for_upstream(name: &str) -> Option<App> {
        match name {
            "users" => Some(App::Users),
            "orders" => Some(App::Orders),
            "catalog" => Some(App::Catalog),
            _ => None,
        }
    }
}

/// Serves `app` on `listener` forever, answering after `latency`.
pub async fn serve(listener: TcpListener, app: App, latency: Duration) {
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let served_by: Arc<str> = Arc::from(local);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let served_by = served_by.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let served_by = served_by.clone();
                async move { Ok::<_, Infallible>(answer(app, req, latency, &served_by).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds `addr` and serves `app` on a background task; returns the bound address.
pub async fn spawn(addr: SocketAddr, app: App, latency: Duration) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener, app, latency));
    Ok(bound)
}

async fn answer(
    app: App,
    req: Request<Incoming>,
    latency: Duration,
    served_by: &str,
) -> Response<Full<Bytes>> {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    let (status, body) = match (app, &method, segments.as_slice()) {
        (_, &Method::GET, ["health"]) => (StatusCode::OK, json!({"status": "ok"})),
        (_, _, ["echo"]) => (StatusCode::OK, echo(req).await),
        (App::Users, &Method::GET, ["users"]) => (
            StatusCode::OK,
            json!({"users": (1..=5).map(|i| user(&i.to_string())).collect::<Vec<_>>()}),
        ),
        (App::Users, &Method::GET, ["users", id]) => (StatusCode::OK, user(id)),
        (App::Users, &Method::POST, ["users"]) => {
            let mut created = echo_body(req).await;
            if let Value::Object(m) = &mut created {
                m.insert("id".into(), json!("new-1"));
            }
            (StatusCode::CREATED, created)
        }
        (App::Orders, &Method::GET, ["orders"]) => {
            let user = param("user").unwrap_or_else(|| "anonymous".into());
            (StatusCode::OK, orders(&user))
        }
        (App::Orders, &Method::GET, ["orders", id]) => (StatusCode::OK, order(id, 1)),
        (App::Catalog, &Method::GET, ["recommendations"]) => {
            let segment = param("segment").unwrap_or_else(|| "standard".into());
            (StatusCode::OK, recommendations(&segment))
        }
        (App::Catalog, &Method::GET, ["products", id]) => (StatusCode::OK, product(id, 0)),
        _ => (
            StatusCode::NOT_FOUND,
            json!({"error": "not found", "path": path}),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = http::HeaderValue::from_str(served_by) {
        resp.headers_mut().insert("x-served-by", v);
    }
    resp
}

fn seed(text: &str) -> u64 {
    text.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
}

fn user(id: &str) -> Value {
    const NAMES: [&str; 6] = [
        "Ada Lovelace",
        "Grace Hopper",
        "Alan Turing",
        "Edsger Dijkstra",
        "Barbara Liskov",
        "Ken Thompson",
    ];
    const SEGMENTS: [&str; 3] = ["gold", "silver", "standard"];
    let s = seed(id);
    json!({
        "id": id,
        "name": NAMES[(s % 6) as usize],
        "email": format!("user{id}@example.com"),
        "avatar_url": format!("https://cdn.example.com/avatars/{id}.png"),
        "segment": SEGMENTS[(s % 3) as usize],
        "locale": "en-GB",
        "address": {"city": "London", "country": "GB", "postcode": "N1 9GU"},
        "created_at": "2024-03-01T10:00:00Z"
    })
}

fn order(id: &str, n: u64) -> Value {
    const STATUS: [&str; 4] = ["placed", "packed", "shipped", "delivered"];
    let s = seed(id).wrapping_add(n);
    json!({
        "id": id,
        "status": STATUS[(s % 4) as usize],
        "total": ((s % 20000) as f64) / 100.0,
        "currency": "EUR",
        "placed_at": format!("2026-11-{:02}T09:30:00Z", 1 + (s % 24)),
        "lines": [{"sku": format!("SKU-{}", s % 997), "qty": 1 + s % 3}]
    })
}

fn orders(user: &str) -> Value {
    let items: Vec<Value> = (1..=8).map(|i| order(&format!("{user}-{i}"), i)).collect();
    json!({"user": user, "items": items, "total_count": 8})
}

fn product(id: &str, rank: u64) -> Value {
    let s = seed(id);
    json!({
        "id": id,
        "title": format!("Product {id}"),
        "price": ((s % 10000) as f64) / 100.0,
        "image_url": format!("https://cdn.example.com/products/{id}.jpg"),
        "score": 1.0 - (rank as f64) / 20.0,
        "description": "A thing worth having, described at length for rich clients."
    })
}

fn recommendations(segment: &str) -> Value {
    let items: Vec<Value> = (0..10)
        .map(|i| product(&format!("{segment}-{i}"), i))
        .collect();
    json!({"segment": segment, "items": items})
}

async fn read_json(body: Incoming) -> Value {
    match Limited::new(body, 1 << 20).collect().await {
        Ok(b) => serde_json::from_slice(&b.to_bytes()).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

async fn echo_body(req: Request<Incoming>) -> Value {
    read_json(req.into_body()).await
}

async fn echo(req: Request<Incoming>) -> Value {
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "headers": headers,
    })
}
