//! One module per subcommand.

pub mod call;
pub mod chaos;
pub mod info;
pub mod load;
pub mod node;
pub mod sim;
pub mod sim_scale;
pub mod up;

/// Prints a line on stdout and flushes it at once, so a parent process that
/// reads our output through a pipe (the tests, a provider) sees the bound
/// address without waiting for a buffer to fill.
pub fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
pub mod sandbox;
pub mod vm;
