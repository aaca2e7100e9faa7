//! Config diagnostics: every problem names its file, line, column and key path.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use http::Method;
use toml::Spanned;

use super::file::Text;
use super::units::{parse_duration, parse_method, parse_size};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem has no position (a missing file).
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Dotted key path, e.g. `routes[2].upstream` or `upstreams.users.timeout`.
    pub key: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file.display())?;
        } else {
            write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.col)?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl ConfigError {
    /// The problem as a warning: `file:line:col: warning: key: message`.
    pub fn warning(&self) -> String {
        let shown = self.to_string();
        let location = if self.line == 0 {
            format!("{}: ", self.file.display())
        } else {
            format!("{}:{}:{}: ", self.file.display(), self.line, self.col)
        };
        match shown.strip_prefix(&location) {
            Some(rest) => format!("{location}warning: {rest}"),
            None => format!("warning: {shown}"),
        }
    }
}

/// Every problem found in one pass over the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// A single error with no position in a file (e.g. the file cannot be read).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
            key: String::new(),
            message: message.into(),
        }])
    }
}

/// The text of one config file, used to turn byte spans into line:col.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path as given (relative paths stay relative for readable messages).
    pub path: PathBuf,
    /// The file's text.
    pub text: Arc<str>,
}

impl SourceFile {
    /// 1-based line and column of a byte offset (columns count characters).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// Turns a TOML parse or shape error into a located config error.
    pub fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let span = err.span().unwrap_or(0..0);
        let (line, col) = self.line_col(span.start);
        ConfigError {
            file: self.path.clone(),
            line,
            col,
            key: key_path_at(&self.text, span.start),
            message: err.message().trim().to_string(),
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Best-effort dotted key path at a byte offset: the enclosing `[table]` header plus the key on
/// that line. Used for serde errors, which carry a span but no path.
fn key_path_at(text: &str, offset: usize) -> String {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let mut table = String::new();
    for line in text[..line_start].lines() {
        let l = line.trim();
        if l.starts_with('[') && !l.starts_with("[[") {
            table = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        } else if l.starts_with("[[") {
            table = l.trim_matches(|c| c == '[' || c == ']').trim().to_string() + "[]";
        }
    }
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    if line.starts_with('[') {
        return line
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_string();
    }
    let key = line.split('=').next().unwrap_or("").trim();
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

/// Collects errors for one file while validating, so every problem is reported in one pass.
pub struct Diagnostics<'a> {
    /// The file being checked.
    pub source: &'a SourceFile,
    /// Problems found so far (shared across files).
    pub errors: &'a mut Vec<ConfigError>,
}

impl Diagnostics<'_> {
    /// Records a problem at a span of the file.
    pub fn error(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, col) = self.source.line_col(span.start);
        self.errors.push(ConfigError {
            file: self.source.path.clone(),
            line,
            col,
            key: key.into(),
            message: message.into(),
        });
    }

    /// Parses a spanned value, recording the parser's message on failure.
    pub fn parse<T>(
        &mut self,
        value: &toml::Spanned<String>,
        key: impl Into<String>,
        parser: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parser(value.get_ref()) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.error(value.span(), key, msg);
                None
            }
        }
    }
}

/// Typed readers for optional keys: each records its error and falls back to the default, so
/// one pass over a file reports every bad value (the one home for these conversions).
impl Diagnostics<'_> {
    /// A duration key (`"250ms"`), or `default` when absent or bad.
    pub fn duration_or(&mut self, value: &Option<Text>, key: &str, default: Duration) -> Duration {
        value
            .as_ref()
            .and_then(|v| self.parse(v, key, parse_duration))
            .unwrap_or(default)
    }

    /// Like [`Diagnostics::duration_or`], where 0 is an error too.
    pub fn positive_duration_or(
        &mut self,
        value: &Option<Text>,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(t) = value else { return default };
        match self.parse(t, key, parse_duration) {
            Some(x) if x.is_zero() => {
                self.error(t.span(), key, "must be more than 0");
                default
            }
            Some(x) => x,
            None => default,
        }
    }

    /// A byte size key (`"16KiB"`), or `default` when absent or bad.
    pub fn size_or(&mut self, value: &Option<Text>, key: &str, default: u64) -> u64 {
        value
            .as_ref()
            .and_then(|v| self.parse(v, key, parse_size))
            .unwrap_or(default)
    }

    /// Like [`Diagnostics::size_or`], where 0 is an error too.
    pub fn positive_size_or(&mut self, value: &Option<Text>, key: &str, default: u64) -> u64 {
        let Some(t) = value else { return default };
        match self.parse(t, key, parse_size) {
            Some(0) => {
                self.error(t.span(), key, "must be more than 0");
                default
            }
            Some(x) => x,
            None => default,
        }
    }

    /// An integer key within `range` (inclusive), or `default` when absent or out of range.
    pub fn count_or(
        &mut self,
        value: &Option<Spanned<i64>>,
        key: &str,
        range: (i64, i64),
        default: usize,
    ) -> usize {
        match value {
            None => default,
            Some(v) if (range.0..=range.1).contains(v.get_ref()) => *v.get_ref() as usize,
            Some(v) => {
                let message = format!(
                    "must be between {} and {}, got {}",
                    range.0,
                    range.1,
                    v.get_ref()
                );
                self.error(v.span(), key, message);
                default
            }
        }
    }

    /// A socket address key (`"127.0.0.1:8080"`).
    pub fn addr(&mut self, value: &Text, key: &str) -> Option<SocketAddr> {
        self.parse(value, key, |s| {
            s.parse::<SocketAddr>().map_err(|_| {
                format!("bad address \"{s}\": expected IP:PORT such as \"127.0.0.1:8080\"")
            })
        })
    }

    /// A percent key (`10`, `0.5`) within [0, 100], or `None` when absent or out of range.
    pub fn percent(&mut self, value: &Option<Spanned<f64>>, key: &str) -> Option<f64> {
        let v = value.as_ref()?;
        let p = *v.get_ref();
        if !(0.0..=100.0).contains(&p) {
            let message = format!("must be a percent between 0 and 100, got {p}");
            self.error(v.span(), key, message);
            return None;
        }
        Some(p)
    }

    /// An HTTP method key (any case; only the standard methods).
    pub fn method(&mut self, value: &Text, key: impl Into<String>) -> Option<Method> {
        self.parse(value, key, parse_method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_and_key_path() {
        let src = SourceFile {
            path: "g.toml".into(),
            text: "[server]\nlisten = 1\n\n[[routes]]\nid = \"a\"\n".into(),
        };
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(9), (2, 1));
        assert_eq!(key_path_at(&src.text, 9), "server.listen");
        assert_eq!(
            key_path_at(&src.text, src.text.find("id").unwrap()),
            "routes[].id"
        );
    }
}
