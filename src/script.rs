//! Programmable phases: sandboxed Luau scripts that routes and BFF endpoints run.
//!
//! Config: `[scripts.NAME] file = "scripts/NAME.lua"`, referenced as `scripts = ["NAME", ...]`
//! by routes and BFF profiles or endpoints, run in order. A script may define the hooks
//! `on_request(req, ctx)` (after the guards, before forwarding or fan-out: edit the request or
//! answer it), `on_response(resp, ctx)` (status, headers, and the body when the script declares
//! `buffer_body = true`) and, on BFF endpoints, `on_aggregate(result, ctx)` (the aggregated JSON
//! object before it is serialized).
//!
//! Each worker thread owns one Luau VM ([`vm`]): sandboxed, no `io`/`os`/`require`/`debug`/
//! `loadstring`, a memory cap, and an interrupt that cuts a call past its time budget. Scripts
//! are compiled to bytecode once per config version ([`compile`]); a VM loads a script's chunk
//! the first time it runs it and keeps it until the script changes. Request data never lives in
//! a VM between calls: `ctx.vars` travels with the request as JSON ([`Session`]), so a request
//! may hop worker threads between its hooks and threads share no mutable state.

pub mod compile;
pub mod convert;
pub mod helpers;
pub mod hooks;
pub mod metrics;
pub mod vm;

mod answer;
mod check;
mod objects;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use crate::filter::Claims;

pub use compile::compile_scripts;

/// The hooks a script may define.
pub const HOOK_NAMES: [&str; 3] = ["on_request", "on_response", "on_aggregate"];
pub use hooks::{Begin, Flow, begin};

/// Every `[scripts.NAME]`, compiled. Empty when none is configured.
#[derive(Debug, Default)]
pub struct Scripts {
    /// Scripts by name.
    pub by_name: BTreeMap<Arc<str>, Arc<Script>>,
    /// Memory cap of each worker thread's VM (`[limits] script_memory`).
    pub memory_limit: usize,
    /// The script files, for the watcher and the config version.
    pub files: Vec<PathBuf>,
    /// Per-script series (`portico_script_*`).
    pub metrics: Option<metrics::ScriptMetrics>,
}

/// One compiled script.
pub struct Script {
    /// Unique per compiled text: a VM reloads its chunk when the id it cached differs.
    pub id: u64,
    /// Name from `[scripts.NAME]`.
    pub name: Arc<str>,
    /// Chunk name in Lua errors and log lines: the file path as configured.
    pub chunk_name: Arc<str>,
    /// Luau bytecode.
    pub bytecode: Arc<[u8]>,
    /// Which hooks the script defines.
    pub hooks: HookSet,
    /// The script declared `buffer_body = true`: `on_response` gets the body.
    pub buffer_body: bool,
    /// Largest body handed to a buffering script.
    pub max_body: usize,
    /// Time one hook call may run.
    pub budget: Duration,
    /// Hash of the bytecode and settings: equal means unchanged across a reload.
    pub fingerprint: u64,
    /// Calls, time and errors.
    pub stats: metrics::ScriptStats,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the bytecode: a debug print of the runtime stays readable.
        f.debug_struct("Script")
            .field("name", &self.name)
            .field("file", &self.chunk_name)
            .field("hooks", &self.hooks)
            .field("buffer_body", &self.buffer_body)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// Which hooks a script defines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HookSet {
    /// `on_request`.
    pub request: bool,
    /// `on_response`.
    pub response: bool,
    /// `on_aggregate`.
    pub aggregate: bool,
}

/// The scripts one route or BFF endpoint runs, in order.
#[derive(Debug)]
pub struct Chain {
    /// The scripts.
    pub scripts: Box<[Arc<Script>]>,
    /// Union of their hooks: a phase no script hooks costs nothing.
    pub hooks: HookSet,
    /// Cap of the buffered response body, when a script buffers it.
    pub buffer_body: Option<usize>,
    /// Memory cap of the VM.
    pub memory_limit: usize,
}

/// Who is asking, for `ctx`: read-only to scripts.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// Route id or BFF endpoint id.
    pub route: Arc<str>,
    /// The request id (`x-request-id`).
    pub request_id: HeaderValue,
    /// The client's address.
    pub client: IpAddr,
    /// Verified claims, when the route authenticates.
    pub claims: Option<Claims>,
}

/// One request's script state between its hooks: who is asking and `ctx.vars` (as JSON, so it
/// may cross worker threads).
#[derive(Debug)]
pub struct Session<'a> {
    /// The scripts of the route or endpoint.
    pub chain: &'a Chain,
    /// `ctx` fields.
    pub info: RequestInfo,
    /// `ctx.vars` after the last hook, if a script used it.
    pub vars: Option<serde_json::Value>,
}
