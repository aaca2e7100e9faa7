//! The `req`, `resp` and `ctx` objects hooks receive: userdata that own the request or
//! response head for the length of one phase (moved in, moved back out), so a field a script
//! never reads costs nothing.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, StatusCode, Uri};
use mlua::{Lua, Table, UserData, UserDataFields, UserDataMethods, Value};

use super::RequestInfo;
use super::convert;

/// `req` of `on_request`.
pub struct ReqObj {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    /// The route's upstream, or the one a script picked.
    pub upstream: Option<Arc<str>>,
    /// Whether a script set `req.upstream`.
    pub upstream_picked: bool,
}

/// `resp` of `on_response`.
pub struct RespObj {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The whole body, when a script of the chain buffers it.
    pub body: Option<Bytes>,
    pub body_changed: bool,
}

/// `ctx`: who is asking (read-only), `vars` (shared by the hooks of one request), and for
/// `on_aggregate` the parts that are missing.
pub struct CtxObj {
    pub info: RequestInfo,
    /// `ctx.vars` as JSON until a script reads it.
    pub vars_json: RefCell<Option<serde_json::Value>>,
    pub vars: RefCell<Option<Table>>,
    pub claims: RefCell<Option<Table>>,
    pub partial: Option<Table>,
}

fn header_name(name: &mlua::String) -> mlua::Result<HeaderName> {
    HeaderName::from_bytes(&name.as_bytes()).map_err(|_| mlua::Error::runtime("bad header name"))
}

fn header_value(value: &mlua::String) -> mlua::Result<HeaderValue> {
    HeaderValue::from_bytes(&value.as_bytes())
        .map_err(|_| mlua::Error::runtime("bad header value (control characters)"))
}

/// `x:header(name)`: the values of a header joined by ", ", or nil.
fn get_header(lua: &Lua, h: &HeaderMap, name: mlua::String) -> mlua::Result<Value> {
    let name = header_name(&name)?;
    let mut values = h.get_all(&name).iter();
    let Some(first) = values.next() else {
        return Ok(Value::Nil);
    };
    let mut out = first.as_bytes().to_vec();
    for v in values {
        out.extend_from_slice(b", ");
        out.extend_from_slice(v.as_bytes());
    }
    lua.create_string(out).map(Value::String)
}

/// `x:headers()`: a fresh table name -> value (repeated headers joined by ", ").
fn all_headers(lua: &Lua, h: &HeaderMap) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, h.keys_len())?;
    for name in h.keys() {
        let v = get_header(lua, h, lua.create_string(name.as_str())?)?;
        t.raw_set(name.as_str(), v)?;
    }
    Ok(t)
}

/// The header methods `req` and `resp` share.
fn add_header_methods<T, M>(m: &mut M, headers: fn(&mut T) -> &mut HeaderMap)
where
    T: 'static,
    M: UserDataMethods<T>,
{
    m.add_method_mut("header", move |lua, this, name: mlua::String| {
        get_header(lua, headers(this), name)
    });
    m.add_method_mut("headers", move |lua, this, ()| {
        all_headers(lua, headers(this))
    });
    m.add_method_mut(
        "set_header",
        move |_, this, (name, value): (mlua::String, mlua::String)| {
            headers(this).insert(header_name(&name)?, header_value(&value)?);
            Ok(())
        },
    );
    m.add_method_mut(
        "add_header",
        move |_, this, (name, value): (mlua::String, mlua::String)| {
            headers(this).append(header_name(&name)?, header_value(&value)?);
            Ok(())
        },
    );
    m.add_method_mut("remove_header", move |_, this, name: mlua::String| {
        headers(this).remove(header_name(&name)?);
        Ok(())
    });
}

impl ReqObj {
    fn set_path_and_query(&mut self, path: &str, query: Option<&str>) -> mlua::Result<()> {
        if !path.starts_with('/') || path.contains(['?', '#']) {
            return Err(mlua::Error::runtime(
                "req.path must start with '/' and hold no '?' or '#'",
            ));
        }
        let text = match query {
            Some(q) if !q.is_empty() => format!("{path}?{q}"),
            _ => path.to_owned(),
        };
        let pq = PathAndQuery::try_from(text)
            .map_err(|_| mlua::Error::runtime("bad path or query characters"))?;
        let mut parts = std::mem::take(&mut self.uri).into_parts();
        parts.path_and_query = Some(pq);
        self.uri = Uri::from_parts(parts).map_err(|_| mlua::Error::runtime("bad path"))?;
        Ok(())
    }
}

impl UserData for ReqObj {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_field_method_get("method", |lua, this| {
            lua.create_string(this.method.as_str())
        });
        f.add_field_method_get("path", |lua, this| lua.create_string(this.uri.path()));
        f.add_field_method_set("path", |_, this, path: mlua::String| {
            let query = this.uri.query().map(str::to_owned);
            this.set_path_and_query(&path.to_str()?, query.as_deref())
        });
        f.add_field_method_get("query", |lua, this| {
            this.uri.query().map(|q| lua.create_string(q)).transpose()
        });
        f.add_field_method_set("query", |_, this, query: Option<mlua::String>| {
            let path = this.uri.path().to_owned();
            let q = query
                .map(|q| q.to_str().map(|s| s.to_owned()))
                .transpose()?;
            if q.as_deref().is_some_and(|q| q.contains('#')) {
                return Err(mlua::Error::runtime("req.query must hold no '#'"));
            }
            this.set_path_and_query(&path, q.as_deref())
        });
        f.add_field_method_get("upstream", |lua, this| {
            this.upstream
                .as_deref()
                .map(|u| lua.create_string(u))
                .transpose()
        });
        f.add_field_method_set("upstream", |_, this, name: mlua::String| {
            if this.upstream.is_none() {
                return Err(mlua::Error::runtime(
                    "req.upstream can only be set on a proxy route",
                ));
            }
            this.upstream = Some(Arc::from(&*name.to_str()?));
            this.upstream_picked = true;
            Ok(())
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        add_header_methods(m, |r: &mut ReqObj| &mut r.headers);
    }
}

impl UserData for RespObj {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_field_method_get("status", |_, this| Ok(this.status.as_u16()));
        f.add_field_method_set("status", |_, this, status: u16| {
            this.status = StatusCode::from_u16(status)
                .ok()
                .filter(|s| s.as_u16() >= 200)
                .ok_or_else(|| mlua::Error::runtime("resp.status must be 200..=999"))?;
            Ok(())
        });
        f.add_field_method_get("body", |lua, this| {
            this.body.as_ref().map(|b| lua.create_string(b)).transpose()
        });
        f.add_field_method_set("body", |_, this, body: mlua::String| {
            if this.body.is_none() {
                return Err(mlua::Error::runtime(
                    "resp.body is only available to scripts that declare buffer_body = true",
                ));
            }
            this.body = Some(Bytes::copy_from_slice(&body.as_bytes()));
            this.body_changed = true;
            Ok(())
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        add_header_methods(m, |r: &mut RespObj| &mut r.headers);
    }
}

impl UserData for CtxObj {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_field_method_get("route", |lua, this| lua.create_string(&*this.info.route));
        f.add_field_method_get("request_id", |lua, this| {
            lua.create_string(this.info.request_id.as_bytes())
        });
        f.add_field_method_get("client", |_, this| Ok(this.info.client.to_string()));
        f.add_field_method_get("claims", |lua, this| {
            let mut cached = this.claims.borrow_mut();
            if cached.is_none() {
                if let Some(c) = &this.info.claims {
                    let t = convert::object_to_lua(lua, c)?;
                    convert::freeze(&t)?;
                    *cached = Some(t);
                }
            }
            Ok(cached.clone())
        });
        f.add_field_method_get("vars", |lua, this| {
            let mut cached = this.vars.borrow_mut();
            if let Some(t) = &*cached {
                return Ok(t.clone());
            }
            let t = match this.vars_json.borrow_mut().take() {
                Some(serde_json::Value::Object(m)) => convert::object_to_lua(lua, &m)?,
                _ => lua.create_table()?,
            };
            *cached = Some(t.clone());
            Ok(t)
        });
        f.add_field_method_get("partial", |_, this| Ok(this.partial.clone()));
    }
}
