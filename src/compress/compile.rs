//! Compiling `[compression]` into a [`Compression`]: every coding, pattern and level is checked
//! here, so `portico check` reports a typo before a reload could apply it.

use std::sync::Arc;

use toml::Spanned;

use super::{Algorithm, Compression, Levels, TypePattern};
use crate::config::diag::Diagnostics;
use crate::config::file::compression::{CompressionFile, LevelFile};

const KEY: &str = "compression";

/// What is compressed when `types` is not set: text formats that shrink well. Images, video,
/// archives and fonts are already compressed.
const DEFAULT_TYPES: &[&str] = &[
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/xml",
    "application/*+xml",
    "application/x-ndjson",
    "application/wasm",
    "image/svg+xml",
    "text/*",
];

/// The default `types`.
pub fn default_types() -> Box<[TypePattern]> {
    DEFAULT_TYPES
        .iter()
        .map(|t| TypePattern::parse(t).expect("default patterns are valid"))
        .collect()
}

/// Compiles `[compression]`; `None` when absent (the response path then does no work) or
/// wrong (errors recorded in `d`).
pub fn compile(
    d: &mut Diagnostics,
    file: Option<&Spanned<CompressionFile>>,
) -> Option<Arc<Compression>> {
    let f = file?.get_ref();
    let before = d.errors.len();
    let algorithms = match &f.algorithms {
        None => [Algorithm::Zstd, Algorithm::Brotli, Algorithm::Gzip].into(),
        Some(list) => algorithms(d, list),
    };
    let min_size = d.size_or(&f.min_size, &format!("{KEY}.min_size"), 1024);
    let types = match &f.types {
        None => default_types(),
        Some(list) => list
            .iter()
            .filter_map(|t| d.parse(t, format!("{KEY}.types"), TypePattern::parse))
            .collect(),
    };
    let levels = f
        .level
        .as_ref()
        .map_or_else(Levels::default, |l| levels(d, l.get_ref()));
    (d.errors.len() == before).then(|| {
        Arc::new(Compression {
            algorithms,
            min_size,
            types,
            levels,
        })
    })
}

fn algorithms(d: &mut Diagnostics, list: &Spanned<Vec<Spanned<String>>>) -> Box<[Algorithm]> {
    let key = format!("{KEY}.algorithms");
    let mut out: Vec<Algorithm> = Vec::new();
    for t in list.get_ref() {
        let Some(a) = d.parse(t, &key, |s| match s {
            "zstd" => Ok(Algorithm::Zstd),
            "br" => Ok(Algorithm::Brotli),
            "gzip" => Ok(Algorithm::Gzip),
            _ => Err(format!(
                "unknown coding \"{s}\": expected \"zstd\", \"br\" or \"gzip\""
            )),
        }) else {
            continue;
        };
        if out.contains(&a) {
            d.error(t.span(), &key, format!("\"{}\" is listed twice", a.token()));
        }
        out.push(a);
    }
    if list.get_ref().is_empty() {
        // An empty list would configure compression that never compresses: say so.
        d.error(
            list.span(),
            &key,
            "is empty; remove [compression] to turn compression off",
        );
    }
    out.into()
}

fn levels(d: &mut Diagnostics, f: &LevelFile) -> Levels {
    let default = Levels::default();
    // Every range fits u32 and i32, so the casts below are exact.
    let mut level = |v: &Option<Spanned<i64>>, name: &str, range: (i64, i64), def: usize| {
        d.count_or(v, &format!("{KEY}.level.{name}"), range, def)
    };
    Levels {
        gzip: level(&f.gzip, "gzip", (1, 9), default.gzip as usize) as u32,
        br: level(&f.br, "br", (0, 11), default.br as usize) as u32,
        zstd: level(&f.zstd, "zstd", (1, 19), default.zstd as usize) as i32,
    }
}
