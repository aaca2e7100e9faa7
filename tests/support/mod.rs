//! Shared helpers for integration tests: real backends and a real gateway on 127.0.0.1:0,
//! and HTTP/1.1, h2c and raw-TCP clients. One file per concern; everything is re-exported here
//! so a test writes `use support::*;`.
#![allow(dead_code, unused_imports)]

pub mod attack;
pub mod backend;
pub mod balance;
pub mod check;
pub mod child;
pub mod client;
pub mod config;
pub mod discovery;
pub mod dns;
pub mod etcd;
pub mod fault;
pub mod fixed;
pub mod gateway;
pub mod jwt;
pub mod metrics;
pub mod pooled;
pub mod profile;
pub mod python;
pub mod raw_h1;
pub mod redis;
pub mod saga;
pub mod tls;
pub mod traffic;

pub use backend::*;
pub use check::*;
pub use child::*;
pub use client::*;
pub use config::*;
pub use discovery::*;
pub use dns::*;
pub use etcd::*;
pub use fault::*;
pub use fixed::*;
pub use gateway::*;
pub use jwt::*;
pub use metrics::*;
pub use pooled::*;
pub use profile::*;
pub use python::*;
