//! Media-type patterns for `[compression] types`: `type/subtype`, `type/*`, `type/*+suffix`.

/// One pattern, lowercased at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypePattern {
    /// `application/json`.
    Exact(Box<str>),
    /// `text/*`: any subtype of a type (`text/` stored).
    AnySubtype(Box<str>),
    /// `application/*+json`: a structured-syntax suffix of a type (`application/`, `+json`).
    Suffix(Box<str>, Box<str>),
}

impl TypePattern {
    /// Parses a pattern; the message says what a valid one looks like.
    pub fn parse(text: &str) -> Result<TypePattern, String> {
        let t = text.trim().to_ascii_lowercase();
        let bad = || {
            format!(
                "bad media type pattern \"{text}\": expected type/subtype, type/* or type/*+suffix"
            )
        };
        let (ty, sub) = t.split_once('/').ok_or_else(bad)?;
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        if !token(ty) {
            return Err(bad());
        }
        if sub == "*" {
            return Ok(TypePattern::AnySubtype(format!("{ty}/").into()));
        }
        if let Some(suffix) = sub.strip_prefix("*+") {
            if !token(suffix) {
                return Err(bad());
            }
            return Ok(TypePattern::Suffix(
                format!("{ty}/").into(),
                format!("+{suffix}").into(),
            ));
        }
        if !token(sub) {
            return Err(bad());
        }
        Ok(TypePattern::Exact(t.into()))
    }

    /// Whether a Content-Type value (parameters ignored, any case) matches. Compares bytes, so
    /// a non-ASCII value cannot split a character.
    pub fn matches(&self, content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .as_bytes();
        match self {
            TypePattern::Exact(t) => essence.eq_ignore_ascii_case(t.as_bytes()),
            TypePattern::AnySubtype(prefix) => {
                essence.len() > prefix.len()
                    && essence[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            }
            TypePattern::Suffix(prefix, suffix) => {
                essence.len() > prefix.len() + suffix.len()
                    && essence[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
                    && essence[essence.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, ct: &str) -> bool {
        TypePattern::parse(pattern).unwrap().matches(ct)
    }

    #[test]
    fn patterns_match_the_essence_in_any_case() {
        assert!(m("application/json", "Application/JSON; charset=utf-8"));
        assert!(!m("application/json", "application/jsonx"));
        assert!(m("text/*", "text/html"));
        assert!(!m("text/*", "text/"));
        assert!(!m("text/*", "textual/html"));
        assert!(m("application/*+json", "application/problem+json"));
        assert!(!m("application/*+json", "application/json"));
        assert!(m("image/svg+xml", "image/svg+xml"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in ["json", "/json", "text/", "a b/c", "application/*+", "*/*x"] {
            assert!(TypePattern::parse(p).is_err(), "{p}");
        }
    }

    #[test]
    fn multibyte_content_types_do_not_panic() {
        assert!(!m("text/*", "té"));
        assert!(!m("application/*+json", "ééééééééééé/é+jsoné"));
        assert!(!m("image/svg+xml", "image/svg+xmlé"));
    }
}
