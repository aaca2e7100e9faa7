//! The named edge policies routes and BFF profiles refer to (`[ip_lists.NAME]`,
//! `[cors.NAME]`): compiled once per config, resolved by name like rate-limit policies.

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Spanned;

use super::cors::Cors;
use super::cors::compile::CorsPolicies;
use super::ip_list::IpList;
use super::ip_list::compile::IpLists;
use crate::config::Diagnostics;
use crate::config::file::{GatewayFile, Text};

/// Compiled IP lists and CORS policies, with every declared name (a declared policy with
/// errors of its own is not reported again where it is named).
#[derive(Debug, Default)]
pub struct EdgePolicies {
    /// `[ip_lists.NAME]`.
    pub ip_lists: IpLists,
    /// `[cors.NAME]`.
    pub cors: CorsPolicies,
    declared_ip_lists: Vec<String>,
    declared_cors: Vec<String>,
}

/// Compiles `[ip_lists.*]` and `[cors.*]`.
pub fn compile(d: &mut Diagnostics, file: &GatewayFile) -> EdgePolicies {
    EdgePolicies {
        ip_lists: super::ip_list::compile::compile_lists(d, &file.ip_lists),
        cors: super::cors::compile::compile_policies(d, &file.cors),
        declared_ip_lists: names(&file.ip_lists),
        declared_cors: names(&file.cors),
    }
}

fn names<T>(map: &BTreeMap<Spanned<String>, T>) -> Vec<String> {
    map.keys().map(|k| k.get_ref().clone()).collect()
}

impl EdgePolicies {
    /// Resolves `ip_list = "NAME"` (reported at the value when unknown).
    pub fn ip_list(
        &self,
        d: &mut Diagnostics,
        value: Option<&Text>,
        key: &str,
    ) -> Option<Arc<IpList>> {
        resolve(
            d,
            value,
            key,
            "IP list",
            &self.ip_lists,
            &self.declared_ip_lists,
        )
    }

    /// Resolves `cors = "NAME"` (reported at the value when unknown).
    pub fn cors(&self, d: &mut Diagnostics, value: Option<&Text>, key: &str) -> Option<Arc<Cors>> {
        resolve(
            d,
            value,
            key,
            "CORS policy",
            &self.cors,
            &self.declared_cors,
        )
    }
}

fn resolve<T>(
    d: &mut Diagnostics,
    value: Option<&Text>,
    key: &str,
    what: &str,
    compiled: &BTreeMap<Arc<str>, Arc<T>>,
    declared: &[String],
) -> Option<Arc<T>> {
    let value = value?;
    let name = value.get_ref().as_str();
    if let Some(p) = compiled.get(name) {
        return Some(p.clone());
    }
    if !declared.iter().any(|n| n == name) {
        d.error(
            value.span(),
            key,
            format!("unknown {what} `{name}` (declared: {declared:?})"),
        );
    }
    None
}
