//! Portico: a programmable API gateway and BFF reverse proxy.
//!
//! The request path lives in [`handler`]; the compiled, immutable config in [`runtime::Runtime`];
//! the process lifecycle in [`gateway`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access_log;
pub mod admin;
pub mod app;
pub mod bff;
pub mod body;
pub mod config;
pub mod conn;
pub mod demo;
pub mod error;
pub mod filter;
pub mod gateway;
pub mod handler;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod route;
pub mod runtime;
pub mod server;
pub mod tls;
pub mod upstream;

pub use app::{Running, StartError};
pub use gateway::Gateway;
