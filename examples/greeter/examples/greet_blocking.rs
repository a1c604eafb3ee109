//! Calls a running greeter node from synchronous code (no async runtime in
//! this program):
//!
//! ```sh
//! cargo run -p greeter --bin greeter-node -- --listen 127.0.0.1:7200 &
//! cargo run -p greeter --example greet_blocking -- 127.0.0.1:7200 ann
//! ```

use ebb::blocking::BlockingClient;
use greeter::GreeterClient;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(name)) = (args.next(), args.next()) else {
        eprintln!("usage: greet_blocking ADDR NAME, e.g. greet_blocking 127.0.0.1:7200 ann");
        return std::process::ExitCode::from(2);
    };
    match greet(&addr, name) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greet_blocking: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn greet(addr: &str, name: String) -> Result<(), Box<dyn std::error::Error>> {
    let client = BlockingClient::connect(addr)?;
    let greeter = GreeterClient::new(client.transport());
    println!("{}", client.wait(greeter.hello(name.clone()))?);
    let n = client.wait(greeter.sign(name))??;
    println!("signed: signature number {n}");
    Ok(())
}
