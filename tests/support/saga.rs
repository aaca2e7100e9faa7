//! Three fake services for saga tests (inventory, payment, shipping) that count their calls,
//! and the shop profile that chains them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::backend::{Backend, json_response};

/// `[saga]` with its log in `sagas/` beside gateway.toml.
pub const SAGA_TABLE: &str = "[saga]\ndir = \"sagas\"\n";

/// What the three services do, and every call they got in arrival order
/// (`"inventory DELETE /reservations/r-1 {body}"`).
#[derive(Default)]
pub struct World {
    pub calls: Mutex<Vec<String>>,
    /// Status of payment's forward call (0: 200).
    pub pay_status: AtomicUsize,
    /// Shipping hangs instead of answering.
    pub ship_hangs: AtomicUsize,
    /// Payment hangs (for a minute) instead of answering.
    pub pay_hangs: AtomicUsize,
    /// Inventory's compensation fails (500) this many more times.
    pub release_failures: AtomicUsize,
}

impl World {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }
}

pub async fn service(name: &'static str, world: Arc<World>) -> Backend {
    Backend::start(move |req: Request<Incoming>| {
        let world = world.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let line = format!(
                "{name} {} {} {}",
                parts.method,
                parts.uri.path(),
                String::from_utf8_lossy(&body)
            );
            world
                .calls
                .lock()
                .unwrap()
                .push(line.trim_end().to_string());
            let forward = parts.method == http::Method::POST;
            match (name, forward) {
                ("inventory", true) => {
                    json_response(201, serde_json::json!({"id": "r-1", "sku": "A1"}))
                }
                ("inventory", false) => {
                    let left = world.release_failures.load(Ordering::SeqCst);
                    if left > 0 {
                        world.release_failures.store(left - 1, Ordering::SeqCst);
                        json_response(500, serde_json::json!({}))
                    } else {
                        json_response(200, serde_json::json!({"released": true}))
                    }
                }
                ("payment", true) if world.pay_hangs.load(Ordering::SeqCst) > 0 => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    json_response(200, serde_json::json!({"id": "late"}))
                }
                ("payment", true) => match world.pay_status.load(Ordering::SeqCst) {
                    0 => json_response(200, serde_json::json!({"id": "p-1", "secret": "x"})),
                    s => json_response(s as u16, serde_json::json!({"error": "declined"})),
                },
                ("shipping", true) if world.ship_hangs.load(Ordering::SeqCst) > 0 => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    json_response(200, serde_json::json!({"id": "late"}))
                }
                ("shipping", true) => {
                    json_response(200, serde_json::json!({"id": "s-1", "eta": "2d"}))
                }
                _ => json_response(200, serde_json::json!({})),
            }
        }
    })
    .await
}

pub const PROFILE: &str = r#"
name = "shop"
mount = "/shop"
deadline = "3s"

[[endpoints]]
method = "POST"
path = "/checkout"
saga = true

  [[endpoints.steps]]
  name = "reserve"
  upstream = "inventory"
  path = "/reservations"
  body = '{"sku": "{body.sku}", "qty": {body.qty}}'
  compensate = { method = "DELETE", path = "/reservations/{reserve.id}", attempts = 3, backoff = "10ms" }

  [[endpoints.steps]]
  name = "pay"
  upstream = "payment"
  path = "/payments"
  body = { amount = "{body.amount}", reservation = "{reserve.id}" }
  fields = ["id"]
  compensate = { method = "DELETE", path = "/payments/{pay.id}", attempts = 3, backoff = "10ms" }

  [[endpoints.steps]]
  name = "ship"
  upstream = "shipping"
  path = "/shipments"
  timeout = "300ms"
  body = { reservation = "{reserve.id}" }
"#;

/// The three services on loopback, sharing `world`.
pub async fn services(world: &Arc<World>) -> Vec<Backend> {
    vec![
        service("inventory", world.clone()).await,
        service("payment", world.clone()).await,
        service("shipping", world.clone()).await,
    ]
}

/// Upstreams `inventory`, `payment`, `shipping` for [`services`].
pub fn upstreams(b: &[Backend]) -> [(&'static str, std::net::SocketAddr); 3] {
    [
        ("inventory", b[0].addr),
        ("payment", b[1].addr),
        ("shipping", b[2].addr),
    ]
}
