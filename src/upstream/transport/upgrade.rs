//! A protocol upgrade (WebSocket) sent on a connection of its own through hyper's HTTP/1.1
//! client, whose upgrade support hands the connection to the tunnel after a 101. Never pooled:
//! an upgraded connection is not HTTP any more, and one that was not upgraded closes.

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::connect::Stream;
use super::pool::Open;
use crate::body::RequestBody;

/// Sends `req` on `stream`; the connection's task keeps `open` counted while it lives.
pub(super) async fn send(
    stream: Stream,
    req: Request<RequestBody>,
    open: Option<Open>,
) -> hyper::Result<Response<Incoming>> {
    let (mut tx, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
        drop(open);
    });
    tx.send_request(req).await
}
