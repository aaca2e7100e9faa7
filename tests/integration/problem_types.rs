//! The README's table of problem `type` URIs lists exactly the types the code can produce:
//! every slug of `GatewayError::problem` in src/error.rs, the script answer type and the admin
//! API's config-invalid type. A new variant without a README line fails here.

use std::collections::BTreeSet;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Slugs in error.rs: the second argument of `p(StatusCode::X, "slug", ...)` and `slug: "..."`.
fn error_rs_slugs() -> BTreeSet<String> {
    let src = read("src/error.rs");
    let mut out = BTreeSet::new();
    let tokens: Vec<&str> = src.split_whitespace().collect();
    for (i, t) in tokens.iter().enumerate() {
        let quoted = |s: &str| {
            let s = s.trim_end_matches(',');
            (s.len() > 2 && s.starts_with('"') && s.ends_with('"'))
                .then(|| s[1..s.len() - 1].to_string())
        };
        if *t == "slug:" {
            if let Some(slug) = tokens.get(i + 1).and_then(|n| quoted(n)) {
                out.insert(slug);
            }
        }
        let after_status = t.starts_with("StatusCode::") && t.ends_with(',')
            || t.starts_with("p(StatusCode::") && t.ends_with(',');
        if after_status && (i == 0 || tokens[i - 1].ends_with("p(") || t.starts_with("p(")) {
            if let Some(slug) = tokens.get(i + 1).and_then(|n| quoted(n)) {
                out.insert(slug);
            }
        }
    }
    out
}

fn other_slugs() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for file in ["src/script/answer.rs", "src/admin.rs"] {
        let src = read(file);
        for part in src.split("https://portico.dev/problems/").skip(1) {
            let slug: String = part
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            if !slug.is_empty() {
                out.insert(slug);
            }
        }
    }
    out
}

fn readme_slugs() -> BTreeSet<String> {
    let readme = read("README.md");
    let start = readme
        .find("<!-- problem-types")
        .expect("README table marker");
    let end = readme
        .find("<!-- /problem-types -->")
        .expect("README table end");
    readme[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_lists_every_problem_type_the_code_produces_and_no_other() {
    let code = error_rs_slugs();
    assert!(
        code.contains("no-route") && code.contains("rate-limited") && code.contains("forbidden"),
        "the error.rs scan found too little: {code:?}"
    );
    let mut all = code;
    all.extend(other_slugs());
    let readme = readme_slugs();
    let missing: Vec<_> = all.difference(&readme).collect();
    let extra: Vec<_> = readme.difference(&all).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README problem table: missing {missing:?}, not produced by the code {extra:?}"
    );
}
