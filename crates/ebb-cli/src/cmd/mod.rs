//! One module per subcommand.

pub mod addr;
pub mod call;
pub mod chaos;
pub mod demo;
pub mod info;
pub mod load;
pub mod node;
pub mod origin;
pub mod sim;
pub mod sim_lease;
pub mod sim_progress;
pub mod sim_scale;
pub mod up;

/// Prints a line on stdout and flushes it at once (the bound address a
/// parent process waits for).
pub use ebb::node::announce;

/// The exit status of a run stopped by Ctrl-C that still reported what it
/// had (`ebb load`, `ebb demo`), as a shell reports a process killed by
/// SIGINT (128 + 2), so a script can tell it from a run that finished.
pub const INTERRUPTED_EXIT: i32 = 130;

/// Writes `text` to standard output. A reader that has gone (`| head`) is
/// not an error: what it did not read it did not want, and `println!`
/// would panic there with a backtrace instead.
pub fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to standard output"))
        }
        _ => Ok(()),
    }
}
pub mod sandbox;
pub mod vm;
