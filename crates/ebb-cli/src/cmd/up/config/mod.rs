//! `ebb up`'s configuration file: TOML read with serde, then checked key by
//! key so that every error names the key, the bad value and what is
//! accepted.
//!
//! `file.rs` is the schema, `check.rs` the check of one section per
//! function (with `pool.rs` for `[pool]`, `node_tls.rs` for
//! `[pool.node_tls]` and `origin.rs` for `[origin]`),
//! `checked.rs` what a file becomes once it passed.

mod check;
mod checked;
mod file;
mod node_tls;
mod origin;
mod pool;
#[cfg(test)]
mod tests;

pub use check::check;
pub use checked::{Checked, ConfigError, Kind, OriginPlan, OriginSource, Runs, ServiceChoice};
pub use file::File;

/// Reads and checks `text`. TOML syntax errors, unknown keys and values of
/// the wrong type come from the parser with their line and the keys it
/// accepts.
pub fn parse(text: &str) -> Result<Checked, String> {
    let file: File = toml::from_str(text).map_err(|e| in_toml_terms(&e.to_string()))?;
    check(file).map_err(|e| e.to_string())
}

/// serde names the Rust type a key wants (`expected usize`); the reader
/// wrote TOML, so say what to write instead.
const TOML_TERMS: [(&str, &str); 6] = [
    ("expected usize", "expected a whole number, 0 or more"),
    ("expected u64", "expected a whole number, 0 or more"),
    (
        "expected u32",
        "expected a whole number from 0 to 4294967295",
    ),
    ("expected f64", "expected a number, e.g. 0.5"),
    ("expected a boolean", "expected true or false"),
    (
        "expected a sequence",
        "expected a list, e.g. [\"a\", \"b\"]",
    ),
];

fn in_toml_terms(message: &str) -> String {
    TOML_TERMS
        .iter()
        .fold(message.to_owned(), |m, (rust, toml)| m.replace(rust, toml))
}
