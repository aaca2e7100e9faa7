//! `PUT|DELETE|GET /registry/{upstream}[/{instance}]` on the admin listener: the built-in
//! registry's API. Bad input gets problem+json and changes nothing.

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::body::Body;
use crate::config::units::rfc3339;
use crate::runtime::Runtime;
use crate::upstream::discovery::Live;
use crate::upstream::discovery::record::{address, parse};

/// Largest registration body.
const MAX_BODY: usize = 64 * 1024;

/// Answers a request whose path is `/registry/{rest}`.
pub async fn handle(rt: &Runtime, rest: &str, req: Request<Incoming>) -> Response<Body> {
    let (upstream, instance) = match rest.split_once('/') {
        Some((u, i)) => (u, Some(i)),
        None => (rest, None),
    };
    let Some(u) = rt.upstreams.get(upstream) else {
        return problem(
            StatusCode::NOT_FOUND,
            "unknown-upstream",
            format!("no upstream named {upstream:?}"),
        );
    };
    let Some(Live::Registry(reg)) = u.live() else {
        return problem(
            StatusCode::CONFLICT,
            "not-a-registry-upstream",
            format!("upstream {upstream:?} has no `discovery = {{ registry = true }}`"),
        );
    };
    let method = req.method().clone();
    match (method, instance) {
        (Method::GET, None) => {
            let list: Vec<Value> = reg
                .list()
                .into_iter()
                .map(|(id, i)| {
                    json!({
                        "id": id,
                        "address": address(&i),
                        "weight": i.weight,
                        "metadata": i.metadata,
                        "expires_at": rfc3339(i.expires_at),
                    })
                })
                .collect();
            json_response(StatusCode::OK, &json!({ "instances": list }))
        }
        (Method::PUT, Some(id)) if valid_id(id) => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return problem(
                        StatusCode::BAD_REQUEST,
                        "bad-registration",
                        "the body could not be read (at most 64 KiB)".into(),
                    );
                }
            };
            let inst = match parse(&body) {
                Ok(i) => i,
                Err(msg) => return problem(StatusCode::BAD_REQUEST, "bad-registration", msg),
            };
            let new = reg.put(id, inst);
            let status = if new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            json_response(status, &json!({"id": id, "registered": new}))
        }
        (Method::DELETE, Some(id)) => {
            if reg.remove(id) {
                let mut resp = Response::new(Body::full(""));
                *resp.status_mut() = StatusCode::NO_CONTENT;
                resp
            } else {
                problem(
                    StatusCode::NOT_FOUND,
                    "unknown-instance",
                    format!("no instance {id:?} in {upstream:?}"),
                )
            }
        }
        (Method::PUT, Some(_)) => problem(
            StatusCode::BAD_REQUEST,
            "bad-registration",
            "an instance id is 1 to 128 letters, digits, `-`, `_`, `.` or `:`".into(),
        ),
        _ => problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "GET /registry/{upstream}, PUT or DELETE /registry/{upstream}/{instance}".into(),
        ),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut resp = Response::new(Body::full(v.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn problem(status: StatusCode, kind: &str, detail: String) -> Response<Body> {
    let v = json!({
        "type": format!("https://portico.dev/problems/{kind}"),
        "title": status.canonical_reason().unwrap_or(""),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut resp = json_response(status, &v);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}
