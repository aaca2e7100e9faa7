//! Reading a config file into its serde shape while reporting every unknown key, not only the
//! first: serde's `deny_unknown_fields` stops at the first one, so each is recorded (with a
//! "did you mean"), taken out of the parsed document and the document read again.

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::diag::{ConfigError, SourceFile};

/// More unknown keys than this in one file are not worth reading on for.
const MAX_UNKNOWN: usize = 100;

/// Parses `source` into `T`. Every unknown key is an error in the returned list; the value is
/// `None` only when the file has a syntax error or a shape error other than unknown keys (then
/// that error is in the list too).
pub fn parse<T: DeserializeOwned>(source: &SourceFile) -> (Option<T>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut root = match DeTable::parse(&source.text) {
        Ok(root) => root,
        Err(e) => return (None, vec![source.toml_error(&e)]),
    };
    // Keys are removed in the deserializer's order; the report goes by position.
    let by_position = |mut errors: Vec<ConfigError>| {
        errors.sort_by_key(|e| (e.line, e.col));
        errors
    };
    loop {
        let de = toml::de::Deserializer::from(root.clone());
        let err = match T::deserialize(de) {
            Ok(v) => return (Some(v), by_position(errors)),
            Err(e) => e,
        };
        let unknown = unknown_field(err.message());
        let span = err.span();
        let removed = match (&unknown, &span) {
            (Some(_), Some(span)) if errors.len() < MAX_UNKNOWN => {
                let mut path = String::new();
                remove_key(root.get_mut(), span.start, &mut path).then_some(path)
            }
            _ => None,
        };
        let Some(path) = removed else {
            errors.push(source.toml_error(&err));
            return (None, by_position(errors));
        };
        let (name, expected) = unknown.unwrap_or_default();
        let (line, col) = source.line_col(span.map_or(0, |s| s.start));
        let message = match did_you_mean(&name, expected.iter().map(String::as_str)) {
            Some(s) => format!("unknown field `{name}`; did you mean `{s}`?"),
            None if expected.is_empty() => format!("unknown field `{name}`"),
            None => format!(
                "unknown field `{name}`; expected one of {}",
                quoted(&expected)
            ),
        };
        errors.push(ConfigError {
            file: source.path.clone(),
            line,
            col,
            key: path,
            message,
        });
    }
}

/// The `expected` words of an unknown-field message, each in backticks.
fn quoted(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("`{w}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `unknown field `x`, expected one of `a`, `b`` → (`x`, [`a`, `b`]).
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.trim().strip_prefix("unknown field `")?;
    let (name, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((name.to_string(), expected))
}

/// Removes the key whose span starts at `at` from the document; `path` receives its dotted key
/// path (`routes[2].match.path_prefx`). False when no key starts there.
fn remove_key(table: &mut DeTable<'_>, at: usize, path: &mut String) -> bool {
    let found = table.keys().find(|k| k.span().start == at).cloned();
    if let Some(k) = found {
        table.remove(&k);
        push_key(path, k.get_ref());
        return true;
    }
    for (k, v) in table.iter_mut() {
        let len = path.len();
        push_key(path, k.get_ref());
        if remove_in_value(v.get_mut(), at, path) {
            return true;
        }
        path.truncate(len);
    }
    false
}

fn remove_in_value(value: &mut DeValue<'_>, at: usize, path: &mut String) -> bool {
    match value {
        DeValue::Table(t) => remove_key(t, at, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                if remove_in_value(item.get_mut(), at, path) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        _ => false,
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// The candidate closest to `name` by edit distance, when close enough to be a likely typo
/// (at most a third of the name's length, and at least one edit allowed).
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (edit_distance(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `; did you mean `x`?` when one of `candidates` is close to `name`, else empty.
pub fn suggestion<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(name, candidates)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}

/// Edit distance over characters, a swap of two neighbours counting as one edit (optimal
/// string alignment), so `mian` is one edit from `main`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::sync::Arc;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        server: Option<Server>,
        #[serde(default)]
        routes: Vec<Route>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Server {
        listen: Option<String>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Route {
        id: String,
        timeout: Option<String>,
        #[serde(rename = "match")]
        matcher: Option<Match>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Match {
        path: Option<String>,
    }

    #[test]
    fn every_unknown_key_with_suggestions() {
        let text = "[server]\nlistn = \"x\"\n[[routes]]\nid = \"a\"\ntimout = \"1s\"\n[[routes]]\nid = \"b\"\nmatch = { pth = \"/\" }\nzzzzzz = 1\n";
        let src = SourceFile {
            path: "g.toml".into(),
            text: Arc::from(text),
        };
        let (doc, errors) = parse::<Doc>(&src);
        assert!(doc.is_some());
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "g.toml:2:1: server.listn: unknown field `listn`; did you mean `listen`?",
                "g.toml:5:1: routes[0].timout: unknown field `timout`; did you mean `timeout`?",
                "g.toml:8:11: routes[1].match.pth: unknown field `pth`; did you mean `path`?",
                "g.toml:9:1: routes[1].zzzzzz: unknown field `zzzzzz`; expected one of `id`, `timeout`, `match`",
            ]
        );
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("mian", "main"), 1);
        assert_eq!(did_you_mean("usres", ["users", "orders"]), Some("users"));
        assert_eq!(did_you_mean("x", ["users"]), None);
    }
}
