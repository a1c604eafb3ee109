//! `ebb call`: one RPC from the command line, JSON in, JSON out.

use anyhow::{Context, bail};
use ebb::rpc::CallError;
use ebb::rpc::service::{CallOptions, ServiceCodec, call_json};
use ebb::rpc::transport::TcpClient;
use ebb_core::Nanos;
use ebb_demo::DemoCodec;

/// Call one method of a service on a node and print the JSON reply.
///
/// Example: ebb call --addr 127.0.0.1:7000 Demo.incr '{"key":"a"}'
///
/// Exits non-zero with the reason when the call fails. At-most-once methods
/// (like Demo.incr) are never re-sent, so a failure after sending may leave
/// the outcome unknown; the message says so.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  ebb call --addr 127.0.0.1:7000 Demo.incr '{\"key\":\"a\"}'\n  ebb call --addr 127.0.0.1:7000 Demo.echo '{\"msg\":\"hi\"}' --timeout-ms 500\n\nExits 1 with the reason on failure. Demo.incr is at-most-once: after a\nfailure the message says whether it may have run; it never runs twice."
)]
pub struct Args {
    /// The node's address, e.g. 127.0.0.1:7000.
    #[arg(long)]
    pub addr: String,
    /// SERVICE.METHOD, e.g. Demo.incr. Known: Demo.{echo, work, sleep, incr, get, put}.
    pub method: String,
    /// Arguments as a JSON object keyed by parameter name, e.g. '{"key":"a"}'.
    #[arg(default_value = "{}")]
    pub args: String,
    /// Give up after this many milliseconds (resends included).
    #[arg(long, default_value_t = 5_000)]
    pub timeout_ms: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let Some((service, method)) = args.method.split_once('.') else {
        bail!(
            "method {:?} must be SERVICE.METHOD, e.g. Demo.incr (methods of Demo: {})",
            args.method,
            method_list(&DemoCodec)
        );
    };
    let Some(codec) = ebb_demo::service_codec(service) else {
        bail!(
            "unknown service {service:?}: this build knows {}",
            ebb_demo::SERVICE_NAMES.join(", ")
        );
    };
    let json: serde_json::Value = serde_json::from_str(&args.args).with_context(|| {
        format!(
            "arguments {:?} are not valid JSON; pass an object keyed by parameter name, e.g. '{{\"key\":\"a\"}}'",
            args.args
        )
    })?;
    let timeout = Nanos::from_millis(args.timeout_ms);
    let options = CallOptions::default().with_timeout(timeout);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let reply = rt.block_on(async {
        let client = TcpClient::connect(&args.addr).await?;
        call_json(codec, &client, method, json, options).await
    });
    match reply {
        Ok(value) => {
            println!("{value}");
            Ok(())
        }
        Err(e) => Err(explain(e, &args)),
    }
}

fn method_list(codec: &dyn ServiceCodec) -> String {
    let names: Vec<&str> = codec.methods().iter().map(|m| m.name).collect();
    names.join(", ")
}

/// Turns a call failure into a message that says what to do about it.
fn explain(e: CallError, args: &Args) -> anyhow::Error {
    let hint = match &e {
        CallError::OutcomeUnknown { .. } => {
            "the node restarted while the call was outstanding: it ran at most once, maybe not at all, and was not re-sent; check the state before retrying"
        }
        CallError::DeadlineExceeded(_) => {
            "no reply within --timeout-ms; an at-most-once call may or may not have run"
        }
        CallError::ConnectionLost(m) if m.starts_with("cannot connect") => {
            "is `ebb node` running at that address? Nothing was sent"
        }
        CallError::ConnectionLost(_) => {
            "the connection broke after the call was sent: an at-most-once call may or may not have run"
        }
        CallError::ServerUnresponsive(_) => "the node stopped answering heartbeats",
        CallError::BadRequest(_) => "check the argument names and types",
        _ => "",
    };
    let what = format!("{} on {} failed: {e}", args.method, args.addr);
    if hint.is_empty() {
        anyhow::anyhow!(what)
    } else {
        anyhow::anyhow!("{what}\n  ({hint})")
    }
}
