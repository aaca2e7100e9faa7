//! A keep-alive backend that counts its connections (accepted, open now), for tests of the
//! gateway's upstream connection pool; over TLS when given a server config, and optionally
//! closing each connection shortly after an answer without saying so (`connection: close`
//! absent), like an upstream whose keep-alive timeout is shorter than the gateway's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::backend::{checksum, json_response};
use super::fault::Gauge;

/// How a [`ConnBackend`] serves.
#[derive(Default, Clone)]
pub struct ConnOpts {
    /// Serve HTTPS with this config.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Close the connection this long after each answer, silently.
    pub close_after: Option<Duration>,
    /// Wait this long before answering.
    pub delay: Duration,
}

/// The backend; answers JSON `{ "conn": N, "body_len", "body_sum" }` (N: the connection's
/// number, from 1).
pub struct ConnBackend {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    /// Connections open now.
    pub open: Gauge,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConnBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConnBackend {
    /// Starts on 127.0.0.1:0.
    pub async fn start(opts: ConnOpts) -> ConnBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Gauge::new();
        let (count, gauge) = (accepted.clone(), open.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let held = gauge.hold();
                let opts = opts.clone();
                tokio::spawn(async move {
                    let _held = held;
                    match opts.tls.clone() {
                        None => serve(tcp, n, &opts).await,
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                serve(tls, n, &opts).await;
                            }
                        }
                    }
                });
            }
        });
        ConnBackend {
            addr,
            accepted,
            open,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve<S>(io: S, n: usize, opts: &ConnOpts)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let answered = Arc::new(tokio::sync::Notify::new());
    let signal = answered.clone();
    let delay = opts.delay;
    let svc = service_fn(move |req: Request<Incoming>| {
        let signal = signal.clone();
        async move {
            let bytes = req.into_body().collect().await.map(|b| b.to_bytes());
            let bytes = bytes.unwrap_or_default();
            tokio::time::sleep(delay).await;
            signal.notify_one();
            let body = serde_json::json!({
                "conn": n,
                "body_len": bytes.len(),
                "body_sum": checksum(&bytes),
            });
            Ok::<_, Infallible>(json_response(200, body))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    match opts.close_after {
        None => {
            let _ = conn.await;
        }
        Some(after) => {
            let closing = async {
                answered.notified().await;
                tokio::time::sleep(after).await;
            };
            tokio::select! {
                _ = conn => {}
                () = closing => {}
            }
        }
    }
}
