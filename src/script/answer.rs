//! A short-circuit answer returned by `on_request`:
//! `return { status = 403, headers = { ... }, body = "..." }`. Without a `content-type` from
//! the script the answer is problem+json with `body` as its `detail`; a table body is sent as
//! JSON.

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use mlua::Value;

use super::RequestInfo;
use super::vm::Failure;
use crate::body::Body;

/// Problem `type` of an answer a script made without choosing a content type.
pub const PROBLEM_TYPE: &str = "https://portico.dev/problems/script-answer";

/// Builds the client answer from the table an `on_request` hook returned.
pub fn from_value(v: Value, info: &RequestInfo) -> Result<Response<Body>, Failure> {
    let Value::Table(t) = v else {
        return Err(Failure::bad_value(format!(
            "on_request must return nil or a table {{status, headers, body}}, not a {}",
            v.type_name()
        )));
    };
    let status = match t.raw_get::<Value>("status") {
        Ok(Value::Integer(n)) => u16::try_from(n).ok(),
        Ok(Value::Number(n)) if n.fract() == 0.0 => u16::try_from(n as i64).ok(),
        _ => None,
    }
    .and_then(|n| StatusCode::from_u16(n).ok())
    .filter(|s| (200..=599).contains(&s.as_u16()))
    .ok_or_else(|| Failure::bad_value("the answer's `status` must be a number in 200..=599"))?;

    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = status;
    match t.raw_get::<Value>("headers") {
        Ok(Value::Nil) => {}
        Ok(Value::Table(h)) => {
            for pair in h.pairs::<mlua::String, mlua::String>() {
                let (k, v) = pair.map_err(|_| {
                    Failure::bad_value("the answer's `headers` must map names to strings")
                })?;
                let name = HeaderName::from_bytes(&k.as_bytes())
                    .map_err(|_| Failure::bad_value("bad header name in the answer"))?;
                let value = HeaderValue::from_bytes(&v.as_bytes())
                    .map_err(|_| Failure::bad_value("bad header value in the answer"))?;
                resp.headers_mut().append(name, value);
            }
        }
        Ok(other) => {
            return Err(Failure::bad_value(format!(
                "the answer's `headers` must be a table, not a {}",
                other.type_name()
            )));
        }
        Err(e) => return Err(Failure::bad_value(e.to_string())),
    }
    let typed = resp.headers().contains_key(CONTENT_TYPE);
    let body = match t.raw_get::<Value>("body") {
        Ok(Value::Nil) => None,
        Ok(Value::String(s)) => Some(s.as_bytes().to_vec()),
        Ok(v @ Value::Table(_)) => {
            let json = super::convert::to_json(&v, 0).map_err(Failure::bad_value)?;
            if !typed {
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            *resp.body_mut() = Body::full(json.to_string());
            return Ok(resp);
        }
        Ok(other) => {
            return Err(Failure::bad_value(format!(
                "the answer's `body` must be a string or a table, not a {}",
                other.type_name()
            )));
        }
        Err(e) => return Err(Failure::bad_value(e.to_string())),
    };
    if typed {
        *resp.body_mut() = Body::full(body.unwrap_or_default());
        return Ok(resp);
    }
    let title = status.canonical_reason().unwrap_or("Answered by a script");
    let detail = body.map_or_else(
        || title.to_owned(),
        |b| String::from_utf8_lossy(&b).into_owned(),
    );
    let problem = serde_json::json!({
        "type": PROBLEM_TYPE,
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "request_id": info.request_id.to_str().unwrap_or(""),
    });
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    *resp.body_mut() = Body::full(problem.to_string());
    Ok(resp)
}
