//! A gateway.toml builder, so the preamble every test gateway shares (`[server]` listening on
//! 127.0.0.1:0) and the common tables are written once. Self-contained (no other support
//! module), so benches include it too with `#[path]`.

use std::fmt::{Display, Write};

/// What `[server] admin_listen` says.
#[derive(Clone, Copy)]
enum Admin {
    /// `admin_listen = ""`: no admin listener (the default of the builder).
    Off,
    /// `admin_listen = "127.0.0.1:0"`: an admin listener on a free loopback port.
    Ephemeral,
    /// No `admin_listen` key: the gateway's own default (ephemeral beside an ephemeral listen).
    Unset,
}

/// A gateway.toml being built: `[server]` with `listen = "127.0.0.1:0"` and the admin listener
/// off, then the tables in the order they were added, one blank line between tables.
#[derive(Clone)]
pub struct GatewayToml {
    admin: Admin,
    server: String,
    tables: Vec<String>,
}

/// Starts a gateway.toml: public listener on 127.0.0.1:0, admin listener off.
pub fn config() -> GatewayToml {
    GatewayToml {
        admin: Admin::Off,
        server: String::new(),
        tables: Vec::new(),
    }
}

/// `["a", "b"]`: a TOML array of strings.
pub fn toml_list(items: &[impl Display]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

impl GatewayToml {
    /// An admin listener on a free loopback port (`admin_listen = "127.0.0.1:0"`).
    pub fn admin(mut self) -> Self {
        self.admin = Admin::Ephemeral;
        self
    }

    /// No `admin_listen` key at all: the gateway's default applies. Keeps `[server]` two lines
    /// long, which tests asserting `file:line:col` positions rely on.
    pub fn admin_unset(mut self) -> Self {
        self.admin = Admin::Unset;
        self
    }

    /// Extra `[server]` keys, one per line (e.g. `shutdown_grace = "20s"`).
    pub fn server(mut self, lines: &str) -> Self {
        push_lines(&mut self.server, lines);
        self
    }

    /// `[log] access_log = false`: keeps test output quiet where the log is not under test.
    pub fn no_access_log(self) -> Self {
        self.toml("[log]\naccess_log = false")
    }

    /// `[upstreams.NAME]` with `endpoints`.
    pub fn upstream(self, name: &str, endpoints: &[impl Display]) -> Self {
        self.upstream_with(name, endpoints, "")
    }

    /// `[upstreams.NAME]` with `endpoints` and `extra` lines (e.g. `timeout = "5s"`).
    pub fn upstream_with(self, name: &str, endpoints: &[impl Display], extra: &str) -> Self {
        let mut t = format!("[upstreams.{name}]\nendpoints = {}\n", toml_list(endpoints));
        push_lines(&mut t, extra);
        self.toml(&t)
    }

    /// `[[routes]]` with `id`, `match = { path_prefix = PREFIX }` and `upstream`.
    pub fn route(self, id: &str, prefix: &str, upstream: &str) -> Self {
        self.route_with(id, prefix, upstream, "")
    }

    /// `[[routes]]` like [`GatewayToml::route`] plus `extra` lines (e.g. `auth = ...`).
    pub fn route_with(self, id: &str, prefix: &str, upstream: &str, extra: &str) -> Self {
        let mut t = format!(
            "[[routes]]\nid = \"{id}\"\nmatch = {{ path_prefix = \"{prefix}\" }}\nupstream = \"{upstream}\"\n"
        );
        push_lines(&mut t, extra);
        self.toml(&t)
    }

    /// `[auth.providers.NAME]` with `issuer`, `audiences = ["portico"]`, `algorithms` and
    /// `extra` lines (the key source: `secret_file = ...`, `jwks_url = ...`).
    pub fn provider(self, name: &str, issuer: &str, algorithms: &[&str], extra: &str) -> Self {
        let mut t = format!(
            "[auth.providers.{name}]\nissuer = \"{issuer}\"\naudiences = [\"portico\"]\nalgorithms = {}\n",
            toml_list(algorithms)
        );
        push_lines(&mut t, extra);
        self.toml(&t)
    }

    /// Any other tables, verbatim (leading and trailing blank lines are dropped).
    pub fn toml(mut self, text: &str) -> Self {
        let text = text.trim_matches('\n');
        if !text.is_empty() {
            self.tables.push(format!("{text}\n"));
        }
        self
    }

    /// The gateway.toml text.
    pub fn build(&self) -> String {
        let mut out = String::from("[server]\nlisten = \"127.0.0.1:0\"\n");
        match self.admin {
            Admin::Off => out.push_str("admin_listen = \"\"\n"),
            Admin::Ephemeral => out.push_str("admin_listen = \"127.0.0.1:0\"\n"),
            Admin::Unset => {}
        }
        out.push_str(&self.server);
        for t in &self.tables {
            let _ = write!(out, "\n{t}");
        }
        out
    }
}

/// Appends `lines` (without blank lines at either end) and a final newline.
fn push_lines(out: &mut String, lines: &str) {
    let lines = lines.trim_matches('\n');
    if !lines.is_empty() {
        out.push_str(lines);
        out.push('\n');
    }
}
