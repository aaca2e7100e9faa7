//! Portico: a programmable API gateway and BFF reverse proxy.
//!
//! The request path lives in `handler`; the compiled, immutable config in [`runtime::Runtime`];
//! reload in [`gateway`]; process wiring in `app` ([`Running`]). Modules that neither the
//! binary, the tests nor the benches use are private to the crate.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub(crate) mod access_log;
pub(crate) mod admin;
pub(crate) mod app;
pub mod bff;
pub mod body;
pub mod cluster;
pub mod compress;
pub mod config;
pub(crate) mod conn;
pub mod demo;
pub(crate) mod error;
pub mod filter;
pub mod gateway;
pub mod grpc;
pub(crate) mod handler;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod route;
pub mod runtime;
pub mod saga;
pub mod script;
pub(crate) mod server;
pub mod tls;
pub mod trace;
pub mod tunnel;
pub mod upstream;

pub use app::{Running, StartError, probe};
pub use gateway::Gateway;
