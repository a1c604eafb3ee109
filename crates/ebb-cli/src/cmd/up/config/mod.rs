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

/// Reads and checks `text`. TOML syntax errors and unknown keys come from
/// the parser with their line and the keys it accepts.
pub fn parse(text: &str) -> Result<Checked, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    check(file).map_err(|e| e.to_string())
}
