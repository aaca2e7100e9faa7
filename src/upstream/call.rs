//! Requests the gateway builds itself (BFF part calls): same endpoint choice, passive
//! ejection and pooled client as `forward`, but the body is in memory, so a refused
//! connection can always be retried on the next endpoint.

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, Uri};
use hyper::body::Incoming;

use super::{Upstream, error_chain};
use crate::body::RequestBody;
use crate::error::GatewayError;

impl Upstream {
    /// Sends `method path` with `headers` and `body`, failing over on refused connections,
    /// and waits for the response head until `until`.
    pub async fn call(
        &self,
        method: &Method,
        path: PathAndQuery,
        mut headers: HeaderMap,
        body: Bytes,
        until: tokio::time::Instant,
    ) -> Result<Response<Incoming>, GatewayError> {
        let started = tokio::time::Instant::now();
        let n = self.endpoints.len();
        let mut index = self.pick();
        let mut last_error = String::from("no endpoints");
        for attempt in 0..n {
            let ep = &self.endpoints[index];
            let mut p = http::uri::Parts::default();
            p.scheme = Some(ep.scheme.clone());
            p.authority = Some(ep.authority.clone());
            p.path_and_query = Some(path.clone());
            let uri = Uri::from_parts(p).expect("scheme, authority and path make a URI");
            let body = if body.is_empty() {
                RequestBody::empty()
            } else {
                RequestBody::full(body.clone())
            };
            let mut req = Request::new(body);
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri;
            *req.headers_mut() = if attempt + 1 < n {
                headers.clone()
            } else {
                std::mem::take(&mut headers)
            };
            let err = match tokio::time::timeout_at(until, self.client.request(req)).await {
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(GatewayError::UpstreamTimeout {
                        upstream: self.name.clone(),
                        timeout: until.saturating_duration_since(started),
                    });
                }
            };
            if !err.is_connect() {
                return Err(GatewayError::UpstreamProtocol {
                    upstream: self.name.clone(),
                    reason: error_chain(&err),
                });
            }
            self.eject(index);
            last_error = error_chain(&err);
            tracing::warn!(upstream = %self.name, endpoint = %ep.authority, error = %last_error, "connect failed");
            index = (index + 1) % n;
        }
        Err(GatewayError::UpstreamUnreachable {
            upstream: self.name.clone(),
            reason: last_error,
        })
    }
}
