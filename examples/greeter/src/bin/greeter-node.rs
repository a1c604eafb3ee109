//! The greeter's node binary: `greeter-node --listen 127.0.0.1:7200` or
//! `greeter-node --listen-fd 3`, the same command line as `ebb node`, so a
//! process provider (and the gateway's `[service] command`) can run it.

use greeter::{GreeterServer, Guestbook};

fn main() -> std::process::ExitCode {
    ebb::node::main("greeter-node", GreeterServer::new(Guestbook::new()))
}
