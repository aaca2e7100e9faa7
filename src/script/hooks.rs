//! The three phases scripts hook into, as the handler and the BFF call them:
//! [`Session::on_request`], [`Session::on_response`], [`Session::on_aggregate`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::Response;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH};
use http::request::Parts;
use http_body_util::{BodyExt, Limited};
use mlua::{AnyUserData, Function, IntoLuaMulti, Lua, Value};

use super::objects::{CtxObj, ReqObj, RespObj};
use super::vm::{self, FailKind, Failure, Vm};
use super::{Chain, RequestInfo, Script, Session};
use crate::body::Body;
use crate::error::GatewayError;
use crate::upstream::Upstream;

/// What `on_request` decided.
pub enum Flow {
    /// Go on; `Some` when a script picked another upstream (`req.upstream = "name"`).
    Continue(Option<Arc<Upstream>>),
    /// A script answered: send this and forward nothing.
    Respond(Response<Body>),
}

/// A proxy route's upstream and the upstreams a script may pick from by name.
pub type RouteUpstreams<'r> = (&'r Arc<Upstream>, &'r BTreeMap<Arc<str>, Arc<Upstream>>);

/// The outcome of [`begin`].
pub enum Begin<'a> {
    /// Go on, with the request's script state (if the target has scripts) and the upstream a
    /// script picked.
    Go(Option<Session<'a>>, Option<Arc<Upstream>>),
    /// A script answered the request.
    Respond(Response<Body>),
}

/// The handler's script phase after the guards: nothing when the target has no scripts, else
/// a session and its `on_request` hooks. `route` is a proxy route's upstream and the upstreams
/// a script may pick from (`None` on a BFF endpoint).
pub fn begin<'a>(
    chain: Option<&'a Chain>,
    info: impl FnOnce() -> RequestInfo,
    parts: &mut Parts,
    route: Option<RouteUpstreams<'_>>,
) -> Result<Begin<'a>, GatewayError> {
    let Some(chain) = chain else {
        return Ok(Begin::Go(None, None));
    };
    let mut session = Session::new(chain, info());
    Ok(match session.on_request(parts, route)? {
        Flow::Respond(resp) => Begin::Respond(resp),
        Flow::Continue(picked) => Begin::Go(Some(session), picked),
    })
}

impl RequestInfo {
    /// `ctx` for a request on `route` from `client`.
    pub fn new(
        route: &Option<Arc<str>>,
        request_id: &http::HeaderValue,
        client: std::net::IpAddr,
        claims: Option<&crate::filter::Claims>,
    ) -> RequestInfo {
        RequestInfo {
            route: route.clone().unwrap_or_else(|| Arc::from("-")),
            request_id: request_id.clone(),
            client,
            claims: claims.cloned(),
        }
    }
}

/// A failure with the script it happened in.
struct Fault {
    script: Arc<Script>,
    failure: Failure,
}

impl<'a> Session<'a> {
    /// Starts a request's script state.
    pub fn new(chain: &'a Chain, info: RequestInfo) -> Session<'a> {
        Session {
            chain,
            info,
            vars: None,
        }
    }

    /// Runs the `on_request` hooks in order on the request head. `route` is the proxy route's
    /// upstream and the upstreams a script may pick from (`None` on a BFF endpoint).
    pub fn on_request(
        &mut self,
        parts: &mut Parts,
        route: Option<RouteUpstreams<'_>>,
    ) -> Result<Flow, GatewayError> {
        if self.chain.buffer_body.is_some() {
            // A script that reads the body wants it readable, not compressed.
            parts.headers.remove(ACCEPT_ENCODING);
        }
        if !self.chain.hooks.request {
            return Ok(Flow::Continue(None));
        }
        let req = ReqObj {
            method: parts.method.clone(),
            uri: std::mem::take(&mut parts.uri),
            headers: std::mem::take(&mut parts.headers),
            upstream: route.map(|(u, _)| u.name.clone()),
            upstream_picked: false,
        };
        let chain = self.chain;
        let (req, answer, vars) = self.run(|vm, ctx| {
            let req = create(vm, chain, req)?;
            let mut answer = None;
            for script in chain.scripts.iter().filter(|s| s.hooks.request) {
                let f = hook(vm, script, |l| l.on_request.clone())?;
                let v = call(vm, script, &f, (req.clone(), ctx.clone()))?;
                if !v.is_nil() {
                    answer = Some((script.clone(), v));
                    break;
                }
            }
            let req = take::<ReqObj>(vm, chain, &req)?;
            Ok((req, answer))
        })?;
        self.vars = vars;
        parts.uri = req.uri;
        parts.headers = req.headers;
        if let Some((script, v)) = answer {
            return super::answer::from_value(v, &self.info)
                .map(Flow::Respond)
                .map_err(|failure| fail(Fault { script, failure }));
        }
        let picked = match (req.upstream_picked, req.upstream, route) {
            (true, Some(name), Some((_, all))) => {
                let found = all.get(&name).cloned().ok_or_else(|| {
                    fail(Fault {
                        script: chain.scripts[0].clone(),
                        failure: Failure::bad_value(format!(
                            "req.upstream: unknown upstream `{name}`"
                        )),
                    })
                })?;
                Some(found)
            }
            _ => None,
        };
        Ok(Flow::Continue(picked))
    }

    /// Runs the `on_response` hooks on the response head (and its body, read whole up to the
    /// cap, when a script buffers it).
    pub async fn on_response(
        &mut self,
        resp: Response<Body>,
    ) -> Result<Response<Body>, GatewayError> {
        if !self.chain.hooks.response {
            return Ok(resp);
        }
        let (mut head, body) = resp.into_parts();
        // A buffered body keeps its trailers (gRPC status) for the rebuilt one.
        let (buffered, body, trailers) = match self.chain.buffer_body {
            Some(cap) => {
                let (bytes, trailers) = read_body(self.chain, body, cap).await?;
                (Some(bytes), None, trailers)
            }
            None => (None, Some(body), None),
        };
        let obj = RespObj {
            status: head.status,
            headers: std::mem::take(&mut head.headers),
            body: buffered,
            body_changed: false,
        };
        let chain = self.chain;
        let (obj, (), vars) = self.run(|vm, ctx| {
            let resp = create(vm, chain, obj)?;
            for script in chain.scripts.iter().filter(|s| s.hooks.response) {
                let f = hook(vm, script, |l| l.on_response.clone())?;
                expect_nil(script, call(vm, script, &f, (resp.clone(), ctx.clone()))?)?;
            }
            Ok((take::<RespObj>(vm, chain, &resp)?, ()))
        })?;
        self.vars = vars;
        head.status = obj.status;
        head.headers = obj.headers;
        let body = match (body, obj.body) {
            (Some(streamed), _) => streamed,
            (None, bytes) => {
                if obj.body_changed {
                    head.headers.remove(CONTENT_LENGTH);
                }
                with_trailers(bytes.unwrap_or_default(), trailers)
            }
        };
        Ok(Response::from_parts(head, body))
    }

    /// A BFF answer's script phases: `on_aggregate`, then `on_response`.
    pub async fn on_aggregated(
        &mut self,
        mut resp: Response<Body>,
    ) -> Result<Response<Body>, GatewayError> {
        self.on_aggregate(&mut resp)?;
        self.on_response(resp).await
    }

    /// Runs the `on_aggregate` hooks on a BFF answer's JSON object before it goes out:
    /// `result` is the object without `_partial`, `ctx.partial` maps missing parts to reasons.
    pub fn on_aggregate(&mut self, resp: &mut Response<Body>) -> Result<(), GatewayError> {
        if !self.chain.hooks.aggregate {
            return Ok(());
        }
        let bytes = match std::mem::take(resp.body_mut()) {
            Body::Full(Some(b)) => b,
            other => {
                *resp.body_mut() = other;
                return Ok(());
            }
        };
        let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(&bytes) else {
            *resp.body_mut() = Body::full(bytes);
            return Ok(());
        };
        let partial = map.remove(crate::bff::PARTIAL_KEY);
        let chain = self.chain;
        let (mut out, (), vars) = self.run_with_partial(partial.as_ref(), |vm, ctx| {
            let lua = &vm.lua;
            let mut result = super::convert::object_to_lua(lua, &map)
                .map(Value::Table)
                .map_err(|e| at(vm, chain, &e))?;
            let mut last = &chain.scripts[0];
            for script in chain.scripts.iter().filter(|s| s.hooks.aggregate) {
                last = script;
                let f = hook(vm, script, |l| l.on_aggregate.clone())?;
                match call(vm, script, &f, (result.clone(), ctx.clone()))? {
                    Value::Nil => {}
                    t @ Value::Table(_) => result = t,
                    other => {
                        return Err(Fault {
                            script: script.clone(),
                            failure: Failure::bad_value(format!(
                                "on_aggregate must return nil or a table, not a {}",
                                other.type_name()
                            )),
                        });
                    }
                }
            }
            match super::convert::to_json(&result, 0) {
                Ok(serde_json::Value::Object(m)) => Ok((m, ())),
                Ok(_) => Err(Fault {
                    script: last.clone(),
                    failure: Failure::bad_value("on_aggregate's result must stay an object"),
                }),
                Err(e) => Err(Fault {
                    script: last.clone(),
                    failure: Failure::bad_value(format!("on_aggregate's result: {e}")),
                }),
            }
        })?;
        self.vars = vars;
        if let Some(p) = partial {
            out.insert(crate::bff::PARTIAL_KEY.to_owned(), p);
        }
        resp.headers_mut().remove(CONTENT_LENGTH);
        *resp.body_mut() = Body::full(serde_json::Value::Object(out).to_string());
        Ok(())
    }

    /// Runs one phase on this thread's VM with a fresh `ctx`; hands back `ctx.vars` as JSON.
    fn run<T, U>(
        &self,
        f: impl FnOnce(&mut Vm, &AnyUserData) -> Result<(T, U), Fault>,
    ) -> Result<(T, U, Option<serde_json::Value>), GatewayError> {
        self.run_with_partial(None, f)
    }

    fn run_with_partial<T, U>(
        &self,
        partial: Option<&serde_json::Value>,
        f: impl FnOnce(&mut Vm, &AnyUserData) -> Result<(T, U), Fault>,
    ) -> Result<(T, U, Option<serde_json::Value>), GatewayError> {
        let chain = self.chain;
        let first = chain.scripts[0].clone();
        let mut fault = None;
        let out = vm::with_vm(chain.memory_limit, |vm| {
            vm.set_request(Some(&self.info.request_id));
            let result = (|| {
                let ctx = new_ctx(&vm.lua, self, partial).map_err(|e| at(vm, chain, &e))?;
                let (t, u) = f(vm, &ctx)?;
                let ctx = take::<CtxObj>(vm, chain, &ctx)?;
                let vars = ctx.vars.into_inner();
                let vars = match vars {
                    Some(t) => {
                        Some(
                            super::convert::to_json(&Value::Table(t), 0).map_err(|e| Fault {
                                script: first.clone(),
                                failure: Failure::bad_value(format!("ctx.vars: {e}")),
                            })?,
                        )
                    }
                    None => ctx.vars_json.into_inner(),
                };
                Ok((t, u, vars))
            })();
            vm.set_request(None);
            result.map_err(|f: Fault| {
                let failure = f.failure.clone();
                fault = Some(f);
                failure
            })
        });
        match out {
            Ok(v) => Ok(v),
            Err(failure) => Err(fail(fault.unwrap_or(Fault {
                script: first,
                failure,
            }))),
        }
    }
}

fn new_ctx(
    lua: &Lua,
    s: &Session<'_>,
    partial: Option<&serde_json::Value>,
) -> mlua::Result<AnyUserData> {
    let partial = match partial {
        Some(serde_json::Value::Object(m)) => Some(super::convert::object_to_lua(lua, m)?),
        _ => None,
    };
    lua.create_userdata(CtxObj {
        info: s.info.clone(),
        vars_json: std::cell::RefCell::new(s.vars.clone()),
        vars: Default::default(),
        claims: Default::default(),
        partial,
    })
}

fn create<T: mlua::UserData + 'static>(
    vm: &mut Vm,
    chain: &Chain,
    obj: T,
) -> Result<AnyUserData, Fault> {
    vm.lua.create_userdata(obj).map_err(|e| at(vm, chain, &e))
}

fn take<T: 'static>(vm: &mut Vm, chain: &Chain, ud: &AnyUserData) -> Result<T, Fault> {
    // A script that kept `req` or `ctx` in a coroutine may still hold a borrow: that is an error.
    ud.take::<T>().map_err(|e| at(vm, chain, &e))
}

/// A Lua error outside any one hook, charged to the chain's first script.
fn at(vm: &mut Vm, chain: &Chain, e: &mlua::Error) -> Fault {
    Fault {
        script: chain.scripts[0].clone(),
        failure: vm.failure(e),
    }
}

fn hook(
    vm: &mut Vm,
    script: &Arc<Script>,
    pick: impl FnOnce(&vm::Loaded) -> Option<Function>,
) -> Result<Function, Fault> {
    let loaded = vm.loaded(script).map_err(|failure| Fault {
        script: script.clone(),
        failure,
    })?;
    pick(loaded).ok_or_else(|| Fault {
        script: script.clone(),
        failure: Failure::bad_value("the hook disappeared"),
    })
}

/// Calls one hook within the script's budget and records its time.
fn call(
    vm: &mut Vm,
    script: &Arc<Script>,
    f: &Function,
    args: impl IntoLuaMulti,
) -> Result<Value, Fault> {
    let start = Instant::now();
    vm.arm(script.budget);
    let out = f.call::<Value>(args);
    vm.disarm();
    script.stats.observe(start.elapsed());
    out.map_err(|e| Fault {
        script: script.clone(),
        failure: vm.failure(&e),
    })
}

fn expect_nil(script: &Arc<Script>, v: Value) -> Result<(), Fault> {
    if v.is_nil() {
        return Ok(());
    }
    Err(Fault {
        script: script.clone(),
        failure: Failure::bad_value(format!(
            "on_response must return nothing, not a {}",
            v.type_name()
        )),
    })
}

/// Counts the failure and turns it into the 500 the client gets.
fn fail(f: Fault) -> GatewayError {
    f.script.stats.error(f.failure.kind);
    GatewayError::ScriptError {
        script: f.script.name.clone(),
        kind: f.failure.kind.as_str(),
        message: f.failure.message,
    }
}

/// A body of `bytes`, then `trailers` when the original had some.
fn with_trailers(bytes: Bytes, trailers: Option<http::HeaderMap>) -> Body {
    use http_body_util::BodyExt as _;
    let Some(trailers) = trailers else {
        return Body::full(bytes);
    };
    let mut frames = Vec::with_capacity(2);
    if !bytes.is_empty() {
        frames.push(Ok(http_body::Frame::data(bytes)));
    }
    frames.push(Ok(http_body::Frame::trailers(trailers)));
    let stream = futures_util::stream::iter(frames);
    Body::Boxed(http_body_util::StreamBody::new(stream).boxed_unsync())
}

/// Reads a response body whole (and its trailers), failing past `cap` bytes.
async fn read_body(
    chain: &Chain,
    body: Body,
    cap: usize,
) -> Result<(Bytes, Option<http::HeaderMap>), GatewayError> {
    match Limited::new(body, cap).collect().await {
        Ok(c) => {
            let trailers = c.trailers().cloned();
            Ok((c.to_bytes(), trailers))
        }
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            let script = chain
                .scripts
                .iter()
                .find(|s| s.buffer_body)
                .unwrap_or(&chain.scripts[0]);
            Err(fail(Fault {
                script: script.clone(),
                failure: Failure {
                    kind: FailKind::BodyTooLarge,
                    message: format!("the response body is larger than max_body ({cap} bytes)"),
                },
            }))
        }
        Err(e) => Err(GatewayError::UpstreamProtocol {
            upstream: Arc::from("-"),
            reason: format!("response body: {e}"),
        }),
    }
}
