//! What a reload changed: every named part of a config (routes, upstreams, profiles) with a
//! fingerprint of its definition, and the one-line summary of the difference between two.
//!
//! A new kind of part plugs in with one line at compile time:
//! `inventory.insert("profiles", name, fingerprint_bytes(file_text.as_bytes()))`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Kinds always shown in a summary, in this order (others follow alphabetically).
const SHOWN: [&str; 3] = ["routes", "upstreams", "profiles"];

/// Named parts of one config by kind, each with a fingerprint of its definition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inventory {
    kinds: BTreeMap<&'static str, BTreeMap<Arc<str>, u64>>,
}

impl Inventory {
    /// Records one named part; equal fingerprints across a reload mean "unchanged".
    pub fn insert(&mut self, kind: &'static str, name: impl Into<Arc<str>>, fingerprint: u64) {
        self.kinds
            .entry(kind)
            .or_default()
            .insert(name.into(), fingerprint);
    }

    /// Names of one kind.
    pub fn names(&self, kind: &str) -> impl Iterator<Item = &str> {
        self.kinds
            .get(kind)
            .into_iter()
            .flat_map(|m| m.keys().map(|k| &**k))
    }

    /// Routes (by id), upstreams, auth providers and rate-limit policies (by name), and the
    /// single-table sections (`settings`: server, server.tls, limits, log, cluster, bff) of a
    /// gateway.toml text that already compiled. Fingerprints hash the parsed values, so
    /// comments, whitespace and key order do not count.
    pub fn of_gateway(text: &str) -> Inventory {
        let mut inv = Inventory::default();
        let Ok(doc) = text.parse::<toml::Table>() else {
            return inv;
        };
        if let Some(routes) = doc.get("routes").and_then(toml::Value::as_array) {
            for r in routes {
                if let Some(id) = r.get("id").and_then(toml::Value::as_str) {
                    inv.insert("routes", id, fingerprint_value(r));
                }
            }
        }
        for (kind, path) in [
            ("upstreams", &["upstreams"][..]),
            ("auth_providers", &["auth", "providers"]),
            ("rate_limits", &["rate_limits"]),
        ] {
            if let Some(table) = table_at(&doc, path) {
                for (name, v) in table {
                    inv.insert(kind, name.as_str(), fingerprint_value(v));
                }
            }
        }
        for (name, path) in [
            ("server", &["server"][..]),
            ("server.tls", &["server", "tls"]),
            ("limits", &["limits"]),
            ("log", &["log"]),
            ("cluster", &["cluster"]),
            ("bff", &["bff"]),
        ] {
            if let Some(table) = table_at(&doc, path) {
                // `[server]` without its `tls` table, which is a section of its own.
                let mut t = table.clone();
                if name == "server" {
                    t.remove("tls");
                }
                inv.insert("settings", name, fingerprint_value(&toml::Value::Table(t)));
            }
        }
        // Auth keys other than the providers (none today) would count under `auth`.
        inv
    }
}

fn table_at<'a>(doc: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Table> {
    let mut t = doc;
    for key in path {
        t = t.get(*key)?.as_table()?;
    }
    Some(t)
}

/// Fingerprint of raw bytes (FNV-1a).
pub fn fingerprint_bytes(bytes: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.write(bytes);
    h.0
}

/// Fingerprint of a TOML value, independent of key order and formatting.
pub fn fingerprint_value(v: &toml::Value) -> u64 {
    let mut h = Fnv::default();
    hash_value(&mut h, v);
    h.0
}

/// FNV-1a, 64 bits: the crate's one non-cryptographic content hash (config versions and
/// fingerprints), stable across runs and builds.
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }

    /// Feeds bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn hash_value(h: &mut Fnv, v: &toml::Value) {
    use toml::Value as V;
    match v {
        V::String(s) => {
            h.write(b"s");
            h.write(&(s.len() as u64).to_le_bytes());
            h.write(s.as_bytes());
        }
        V::Integer(i) => {
            h.write(b"i");
            h.write(&i.to_le_bytes());
        }
        V::Float(f) => {
            h.write(b"f");
            h.write(&f.to_bits().to_le_bytes());
        }
        V::Boolean(b) => h.write(if *b { b"T" } else { b"F" }),
        V::Datetime(d) => {
            h.write(b"d");
            h.write(d.to_string().as_bytes());
        }
        V::Array(a) => {
            h.write(b"[");
            for x in a {
                hash_value(h, x);
            }
            h.write(b"]");
        }
        V::Table(t) => {
            let mut keys: Vec<&String> = t.keys().collect();
            keys.sort();
            h.write(b"{");
            for k in keys {
                h.write(&(k.len() as u64).to_le_bytes());
                h.write(k.as_bytes());
                hash_value(h, &t[k]);
            }
            h.write(b"}");
        }
    }
}

/// Names added, removed and changed for one kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// In the new config only.
    pub added: Vec<Arc<str>>,
    /// In the old config only.
    pub removed: Vec<Arc<str>>,
    /// In both, with a different definition.
    pub changed: Vec<Arc<str>>,
}

impl Changes {
    /// True when nothing of this kind changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// What one reload changed, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// `(kind, changes)` with the kinds of [`SHOWN`] first.
    pub kinds: Vec<(&'static str, Changes)>,
}

impl ReloadSummary {
    /// The difference between two inventories.
    pub fn between(old: &Inventory, new: &Inventory) -> ReloadSummary {
        let mut kinds: Vec<&'static str> = SHOWN.to_vec();
        for k in old.kinds.keys().chain(new.kinds.keys()) {
            if !kinds.contains(k) {
                kinds.push(k);
            }
        }
        let empty = BTreeMap::new();
        let kinds = kinds
            .into_iter()
            .map(|kind| {
                let a = old.kinds.get(kind).unwrap_or(&empty);
                let b = new.kinds.get(kind).unwrap_or(&empty);
                let mut c = Changes::default();
                for (name, fp) in b {
                    match a.get(name) {
                        None => c.added.push(name.clone()),
                        Some(old_fp) if old_fp != fp => c.changed.push(name.clone()),
                        Some(_) => {}
                    }
                }
                c.removed = a.keys().filter(|n| !b.contains_key(*n)).cloned().collect();
                (kind, c)
            })
            .collect();
        ReloadSummary { kinds }
    }

    /// Changes of one kind.
    pub fn get(&self, kind: &str) -> Option<&Changes> {
        self.kinds.iter().find(|(k, _)| *k == kind).map(|(_, c)| c)
    }
}

impl fmt::Display for ReloadSummary {
    /// `routes +1 -0 ~1 (added: a; changed: b), upstreams +0 -0 ~0, profiles +0 -0 ~0,
    /// settings +0 -0 ~1 (changed: limits)`: the main kinds always, the others (auth providers,
    /// rate limits, scripts, settings sections) when they changed; long name lists are cut so
    /// the summary stays one readable line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self
            .kinds
            .iter()
            .filter(|(kind, c)| SHOWN.contains(kind) || !c.is_empty());
        for (i, (kind, c)) in shown.enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "{kind} +{} -{} ~{}",
                c.added.len(),
                c.removed.len(),
                c.changed.len()
            )?;
            if c.is_empty() {
                continue;
            }
            f.write_str(" (")?;
            let mut first = true;
            for (label, names) in [
                ("added", &c.added),
                ("removed", &c.removed),
                ("changed", &c.changed),
            ] {
                if names.is_empty() {
                    continue;
                }
                if !first {
                    f.write_str("; ")?;
                }
                first = false;
                write!(f, "{label}: ")?;
                const MAX: usize = 5;
                for (j, n) in names.iter().take(MAX).enumerate() {
                    if j > 0 {
                        f.write_str(" ")?;
                    }
                    f.write_str(n)?;
                }
                if names.len() > MAX {
                    write!(f, " +{} more", names.len() - MAX)?;
                }
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[upstreams.a]
endpoints = ["127.0.0.1:1"]
[upstreams.b]
endpoints = ["127.0.0.1:2"]
[[routes]]
id = "one"
match = { path_prefix = "/one", methods = ["GET"] }
upstream = "a"
[[routes]]
id = "two"
match = { path_prefix = "/two" }
upstream = "b"
"#;

    #[test]
    fn every_changed_section_is_named() {
        let old = format!(
            "{BASE}[limits]\nmax_headers = 50\n[auth.providers.a]\nissuer = \"x\"\n[rate_limits.r]\nrate = \"1/s\"\n"
        );
        let new = old
            .replace("max_headers = 50", "max_headers = 60")
            .replace("issuer = \"x\"", "issuer = \"y\"")
            .replace("rate = \"1/s\"", "rate = \"2/s\"")
            + "[server.tls]\nlisten = \"127.0.0.1:0\"\n";
        let s = ReloadSummary::between(&Inventory::of_gateway(&old), &Inventory::of_gateway(&new));
        assert_eq!(
            s.to_string(),
            "routes +0 -0 ~0, upstreams +0 -0 ~0, profiles +0 -0 ~0, \
             auth_providers +0 -0 ~1 (changed: a), rate_limits +0 -0 ~1 (changed: r), \
             settings +2 -0 ~1 (added: server server.tls; changed: limits)"
        );
    }

    #[test]
    fn formatting_and_key_order_are_not_changes() {
        let reordered = r#"
# a comment
[upstreams.b]
endpoints = [ "127.0.0.1:2" ]
[upstreams.a]
endpoints = ["127.0.0.1:1"]
[[routes]]
upstream = "a"
id = "one"
match = { methods = ["GET"], path_prefix = "/one" }
[[routes]]
id = "two"
upstream = "b"
match = { path_prefix = "/two" }
"#;
        let s = ReloadSummary::between(
            &Inventory::of_gateway(BASE),
            &Inventory::of_gateway(reordered),
        );
        assert!(s.kinds.iter().all(|(_, c)| c.is_empty()), "{s}");
        assert_eq!(
            s.to_string(),
            "routes +0 -0 ~0, upstreams +0 -0 ~0, profiles +0 -0 ~0"
        );
    }

    #[test]
    fn added_removed_changed_per_kind() {
        let next = BASE
            .replace("127.0.0.1:2", "127.0.0.1:3")
            .replace("id = \"one\"", "id = \"uno\"")
            + "[[routes]]\nid = \"three\"\nmatch = { path = \"/3\" }\nupstream = \"a\"\n";
        let mut old = Inventory::of_gateway(BASE);
        old.insert("profiles", "web", fingerprint_bytes(b"x"));
        let mut new = Inventory::of_gateway(&next);
        new.insert("profiles", "web", fingerprint_bytes(b"y"));
        new.insert("profiles", "iot", fingerprint_bytes(b"z"));
        let s = ReloadSummary::between(&old, &new);
        let routes = s.get("routes").unwrap();
        assert_eq!(
            routes.added,
            vec![Arc::from("three"), Arc::from("uno")],
            "{s}"
        );
        assert_eq!(routes.removed, vec![Arc::from("one")]);
        assert!(routes.changed.is_empty());
        assert_eq!(s.get("upstreams").unwrap().changed, vec![Arc::from("b")]);
        let p = s.get("profiles").unwrap();
        assert_eq!((p.added.len(), p.changed.len()), (1, 1));
        assert_eq!(
            s.to_string(),
            "routes +2 -1 ~0 (added: three uno; removed: one), \
             upstreams +0 -0 ~1 (changed: b), profiles +1 -0 ~1 (added: iot; changed: web)"
        );
    }
}
