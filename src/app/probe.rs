//! `portico probe URL`: one GET with a timeout for container HEALTHCHECKs and scripts (the
//! image ships no curl); success is a 2xx answer.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// GETs `url` (plain `http://` only) within `timeout`; `Ok(status)` for a 2xx answer, else a
/// one-line reason.
pub async fn probe(url: &str, timeout: Duration) -> Result<http::StatusCode, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(format!(
            "bad URL {url:?}: expected http://HOST:PORT/PATH (e.g. http://127.0.0.1:9901/readyz)"
        ));
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = http::Request::get(uri)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(timeout, client.request(req))
        .await
        .map_err(|_| format!("{url}: no answer within {timeout:?}"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    if status.is_success() {
        Ok(status)
    } else {
        Err(format!("{url}: {status}"))
    }
}
