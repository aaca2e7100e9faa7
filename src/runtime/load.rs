//! `load()`: read gateway.toml and the BFF profiles, run each feature's compile step in
//! dependency order (upstreams and guards before the routes and profiles that name them), and
//! assemble the `Runtime`. Every step records its errors and carries on, so one pass reports
//! every problem; any error refuses the whole config.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Runtime, lifecycle, server};
use crate::config::file::GatewayFile;
use crate::config::inventory::Inventory;
use crate::config::{
    ConfigError, ConfigErrors, Diagnostics, SourceFile, read_source, version_hash,
};
use crate::route::RouteTable;

/// Reads, validates and compiles the config rooted at `path` (gateway.toml and what it refers
/// to). `previous` lends the state that must survive a reload (connection pools, rate-limit
/// buckets, endpoint health) to the parts whose settings did not change. Nothing is changed on
/// error: the caller keeps serving the previous runtime.
pub fn load(path: &Path, previous: Option<&Runtime>) -> Result<Runtime, ConfigErrors> {
    let source = read_source(path)?;
    let (file, mut shape_errors) = crate::config::shape::parse::<GatewayFile>(&source);
    let Some(file) = file else {
        // The profiles are still read, so their own problems are reported in the same pass.
        let profiles = crate::bff::read_profiles(&source, &bff_settings_only(&source));
        shape_errors.extend(profiles.errors);
        return Err(sorted(&source, shape_errors));
    };
    let profiles = crate::bff::read_profiles(&source, &file.bff);
    compile(file, &source, &profiles, previous, shape_errors)
}

/// `[bff]` of a gateway.toml whose shape is wrong elsewhere, so its profiles can still be read.
fn bff_settings_only(source: &SourceFile) -> crate::config::file::BffSettingsFile {
    #[derive(serde::Deserialize)]
    struct BffOnly {
        #[serde(default)]
        bff: crate::config::file::BffSettingsFile,
    }
    toml::from_str::<BffOnly>(&source.text)
        .map(|b| b.bff)
        .unwrap_or_default()
}

/// Errors in report order: gateway.toml first, then the other files by path; by line and
/// column within a file.
fn sorted(root: &SourceFile, mut errors: Vec<ConfigError>) -> ConfigErrors {
    errors.sort_by(|a, b| {
        (a.file != root.path, &a.file, a.line, a.col).cmp(&(
            b.file != root.path,
            &b.file,
            b.line,
            b.col,
        ))
    });
    errors.dedup();
    ConfigErrors(errors)
}

/// Compiles a parsed gateway.toml; `previous` lends state to unchanged parts.
fn compile(
    file: GatewayFile,
    source: &SourceFile,
    profiles: &crate::bff::Sources,
    previous: Option<&Runtime>,
    mut errors: Vec<ConfigError>,
) -> Result<Runtime, ConfigErrors> {
    let mut d = Diagnostics {
        source,
        errors: &mut errors,
    };
    // One registry per process: parts that register metric families get it from here.
    let metrics = previous.map_or_else(Default::default, |p| p.metrics.clone());

    let server = server::settings(&mut d, &file.server);
    let limits = server::limits(&mut d, &file.limits);
    let access_log_file = crate::access_log::file::compile(&mut d, &file.log);
    let discovery = crate::upstream::discovery::compile::globals(&mut d, file.discovery.as_ref());
    let upstreams = crate::upstream::compile::compile(
        &mut d,
        &file.upstreams,
        previous.map(|p| &p.upstreams),
        &metrics,
        &discovery,
    );
    let declared: Vec<&str> = file
        .upstreams
        .keys()
        .map(|k| k.get_ref().as_str())
        .collect();
    let auth = crate::filter::auth::compile_providers(
        &mut d,
        &file.auth,
        previous.map(|p| &p.auth),
        &metrics,
    );
    let cluster = crate::cluster::compile::compile(
        &mut d,
        file.cluster.as_ref(),
        previous.and_then(|p| p.cluster.as_ref()),
        &metrics,
    );
    let rate_limits = crate::filter::rate_limit::compile_policies(
        &mut d,
        &file.rate_limits,
        previous.map(|p| &p.rate_limits),
        cluster.as_ref(),
        &metrics,
    );
    let edge = crate::filter::edge::compile(&mut d, &file);
    let admin_ip_list = edge.ip_list(
        &mut d,
        file.server.admin_ip_list.as_ref(),
        "server.admin_ip_list",
    );
    let declared_providers: Vec<&str> = file
        .auth
        .providers
        .keys()
        .map(|k| k.get_ref().as_str())
        .collect();
    let declared_policies: Vec<&str> = file
        .rate_limits
        .keys()
        .map(|k| k.get_ref().as_str())
        .collect();
    let guards = crate::filter::GuardContext {
        auth: &auth,
        policies: &rate_limits,
        edge: &edge,
        declared_providers: &declared_providers,
        declared_policies: &declared_policies,
    };
    let scripts =
        crate::script::compile_scripts(&mut d, &file, previous.map(|p| &p.scripts), &metrics);
    let script_cx = (&file.scripts, &scripts);
    let route_cx = crate::route::compile::Context {
        upstreams: &upstreams,
        declared: &declared,
        guards,
        metrics: &metrics,
        scripts: script_cx,
        cluster: cluster.as_ref(),
    };
    let mut routes = crate::route::compile::compile(&mut d, &file.routes, route_cx);
    let tls = crate::tls::compile::compile(
        &mut d,
        file.server.tls.as_ref(),
        previous.and_then(|p| p.tls.as_ref()),
    );
    crate::filter::client_cert::check_routes(&mut d, &file.routes, file.server.tls.as_ref());
    if let Some(s) = &server {
        let tls_listen = tls.as_ref().map(|t| t.listen);
        lifecycle::check_restart_only(&mut d, &file, s, &limits, tls_listen, previous);
    }
    let saga = crate::saga::store::compile(
        &mut d,
        file.saga.as_ref(),
        previous.and_then(|p| p.saga.as_ref()),
    );
    let bff_cx = crate::bff::compile::Context {
        upstreams: &upstreams,
        declared: &declared,
        metrics: &metrics,
        guards,
        scripts: script_cx,
        saga: saga.as_ref(),
    };
    let bff = crate::bff::compile::compile(&mut errors, source, &file.bff, profiles, &bff_cx);
    let mut d = Diagnostics {
        source,
        errors: &mut errors,
    };
    let compression = crate::compress::compile::compile(&mut d, file.compression.as_ref());
    let tracing = crate::trace::compile::compile(
        &mut d,
        file.tracing.as_ref(),
        previous.and_then(|p| p.tracing.as_ref()),
        &metrics,
    );

    if !errors.is_empty() {
        return Err(sorted(source, errors));
    }
    // The store's CA file is watched and versioned like the auth key files.
    let mut key_files = auth.files.clone();
    key_files.extend(cluster.as_ref().and_then(|c| c.settings.ca_file.clone()));
    let (version, sources) = versioned_sources(
        source,
        profiles,
        tls.as_ref(),
        &upstreams,
        &key_files,
        &scripts,
    );
    for r in &mut routes {
        r.metrics = metrics.route(&r.id, r.upstream().map(|u| &*u.name));
    }
    let mut inventory = Inventory::of_gateway(&source.text);
    for p in bff.profiles.iter() {
        inventory.insert("profiles", p.name.clone(), p.fingerprint);
    }
    for s in scripts.by_name.values() {
        inventory.insert("scripts", s.name.clone(), s.fingerprint);
    }
    let routes = RouteTable::new(routes);
    let server = server.expect("no errors means settings compiled");
    let warnings = super::warnings::collect(&super::warnings::Inputs {
        file: &file,
        source,
        routes: &routes,
        admin: (server.admin_listen, server.admin_token.is_some()),
        tls: tls.as_ref(),
    });
    Ok(Runtime {
        warnings,
        version,
        loaded_at: SystemTime::now(),
        sources,
        server,
        limits,
        access_log: file.log.access_log.unwrap_or(true),
        access_log_file,
        routes,
        upstreams,
        tls,
        auth,
        rate_limits,
        cluster,
        metrics,
        inventory,
        bff,
        scripts,
        compression,
        admin_ip_list,
        tracing,
        saga,
    })
}

/// Every file the runtime is built from (watched for changes) and the config version: a hash
/// of their contents, so an edited profile, certificate or key file is a new version.
fn versioned_sources(
    source: &SourceFile,
    profiles: &crate::bff::Sources,
    tls: Option<&crate::tls::TlsSettings>,
    upstreams: &crate::upstream::compile::Upstreams,
    key_files: &[PathBuf],
    scripts: &crate::script::Scripts,
) -> (String, Vec<PathBuf>) {
    let mut sources = vec![source.path.clone()];
    sources.extend(crate::bff::compile::source_paths(profiles).map(Path::to_path_buf));
    let clients = upstreams
        .values()
        .map(|u| (&u.settings.tls.files, u.settings.tls.fingerprint));
    let tls_digest = crate::tls::compile::add_sources(&mut sources, tls, clients);
    // Key files count toward the version like the config text: a rotated key is a new config.
    let mut key_texts = add_key_files(&mut sources, key_files);
    // Script files are sources like key files: an edited script is a new config.
    key_texts.extend(crate::script::compile::add_sources(&mut sources, scripts));
    let profile_texts = profiles.files.iter().map(|(s, _)| s.text.as_bytes());
    let version = version_hash(
        [source.text.as_bytes(), &tls_digest]
            .into_iter()
            .chain(profile_texts)
            .chain(key_texts.iter().map(Vec::as_slice)),
    );
    (version, sources)
}

/// Adds the auth key files to the watched sources and returns their contents for the version.
fn add_key_files(sources: &mut Vec<PathBuf>, files: &[PathBuf]) -> Vec<Vec<u8>> {
    let mut texts = Vec::new();
    for path in files {
        if !sources.contains(path) {
            sources.push(path.clone());
            texts.push(std::fs::read(path).unwrap_or_default());
        }
    }
    texts
}
