//! Calls a running greeter node from Rust:
//!
//! ```sh
//! cargo run -p greeter --bin greeter-node -- --listen 127.0.0.1:7200 &
//! cargo run -p greeter --example greet -- 127.0.0.1:7200 ann
//! ```

use greeter::GreeterClient;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(name)) = (args.next(), args.next()) else {
        eprintln!("usage: greet ADDR NAME, e.g. greet 127.0.0.1:7200 ann");
        return std::process::ExitCode::from(2);
    };
    match greet(&addr, name).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greet: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn greet(addr: &str, name: String) -> Result<(), Box<dyn std::error::Error>> {
    // A pool of a few connections; clones of `greeter` would share it.
    let greeter = GreeterClient::connect(addr).await?;
    println!("{}", greeter.hello(name.clone()).await?);
    // The outer `?` is the call (did it run?), the inner one the method's
    // own answer (was the guestbook full?).
    let n = greeter.sign(name).await??;
    println!("signed: signature number {n}");
    Ok(())
}
