//! The export task: finished spans go into a bounded queue (a full queue drops and counts,
//! never waits), and one tokio task sends them in batches to the OTLP/HTTP endpoint with a
//! timeout, so a slow or dead collector never slows a request.

use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus_client::metrics::counter::Counter;
use prost::Message;
use tokio::sync::mpsc;

use super::span::{Attr, Finished, key_value};
use super::{TracingSettings, otlp};

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The sending side of the export queue.
#[derive(Debug)]
pub struct Queue {
    tx: mpsc::Sender<Finished>,
    dropped: Counter,
}

impl Queue {
    /// Starts the export task on the current tokio runtime (`None` outside one, e.g. in
    /// `portico check`). The task ends once the queue's last sender is dropped and the spans
    /// left are sent.
    pub fn start(settings: &TracingSettings, dropped: Counter) -> Option<Queue> {
        let endpoint = settings.otlp_endpoint.clone()?;
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(settings.queue_size);
        let task = Task {
            rx,
            endpoint,
            settings: settings.clone(),
            dropped: dropped.clone(),
            client: client(),
            resource: Arc::new(resource(&settings.service_name)),
        };
        handle.spawn(task.run());
        Some(Queue { tx, dropped })
    }

    /// Queues a span, or drops and counts it when the queue is full.
    pub fn push(&self, span: Finished) {
        if self.tx.try_send(span).is_err() {
            self.dropped.inc();
        }
    }
}

struct Task {
    rx: mpsc::Receiver<Finished>,
    endpoint: http::Uri,
    settings: TracingSettings,
    dropped: Counter,
    client: HttpClient,
    resource: Arc<otlp::Resource>,
}

impl Task {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.settings.batch_size);
        loop {
            // Wait for a first span, then gather more until the batch is full or due.
            let Some(first) = self.rx.recv().await else {
                return;
            };
            batch.push(first);
            let due = tokio::time::Instant::now() + self.settings.flush_interval;
            let mut closed = false;
            while batch.len() < self.settings.batch_size {
                match tokio::time::timeout_at(due, self.rx.recv()).await {
                    Ok(Some(s)) => batch.push(s),
                    Ok(None) => {
                        closed = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.send(std::mem::take(&mut batch)).await;
            if closed {
                return;
            }
        }
    }

    /// POSTs one batch; a failed or slow export drops (and counts) its spans.
    async fn send(&self, batch: Vec<Finished>) {
        let n = batch.len() as u64;
        let body = encode(batch, &self.resource);
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid URI and header");
        let sent = tokio::time::timeout(self.settings.export_timeout, self.client.request(req));
        let failure = match sent.await {
            Ok(Ok(resp)) if resp.status().is_success() => return,
            Ok(Ok(resp)) => format!("collector answered {}", resp.status()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        self.dropped.inc_by(n);
        tracing::debug!(spans = n, error = %failure, "span export failed");
    }
}

/// One `ExportTraceServiceRequest` holding `batch`.
fn encode(batch: Vec<Finished>, resource: &otlp::Resource) -> Vec<u8> {
    let request = otlp::ExportTraceServiceRequest {
        resource_spans: vec![otlp::ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![otlp::ScopeSpans {
                scope: Some(otlp::InstrumentationScope {
                    name: "portico".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                }),
                spans: batch.into_iter().map(Finished::into_otlp).collect(),
            }],
        }],
    };
    request.encode_to_vec()
}

fn resource(service_name: &str) -> otlp::Resource {
    otlp::Resource {
        attributes: vec![
            key_value(Attr::Str("service.name", service_name.to_owned())),
            key_value(Attr::Str("telemetry.sdk.name", "portico".to_owned())),
        ],
    }
}

fn client() -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}
