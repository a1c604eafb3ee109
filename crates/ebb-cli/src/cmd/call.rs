//! `ebb call`: one RPC from the command line, JSON in, JSON out, to any
//! ebb node: the CLI asks the node for its service description and sends
//! the arguments as JSON, which the node's generated JSON adapter decodes,
//! so it reaches services this binary was not built with.

use anyhow::{Context, bail};
use ebb::rpc::CallError;
use ebb::rpc::service::{CallOptions, ServiceDescription};
use ebb::rpc::transport::{ClientTls, Credentials, TcpClient, TcpClientConfig};
use ebb::rpc::wire::{MAX_PAYLOAD_BYTES, Refusal};
use ebb_core::Nanos;

/// How much of an unparsable argument an error message quotes.
const MAX_SHOWN_ARGUMENT_CHARS: usize = 200;

/// Call one method of a service on a node and print the JSON reply.
///
/// Example: ebb call --addr 127.0.0.1:7000 Demo.incr '{"key":"a"}'
///
/// Works with any ebb node (the demo or your own service): the node
/// describes its methods. Exits non-zero with the reason when the call
/// fails, saying whether the call may have run.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  ebb call --addr 127.0.0.1:7000 Demo.incr '{\"key\":\"a\"}'\n  ebb call --addr 127.0.0.1:7000 --token-file my.token Demo.incr '{\"key\":\"a\"}'   (a gateway with auth.token_file)\n  ebb call --addr 127.0.0.1:7000 Demo.echo '{\"msg\":\"hi\"}' --timeout-ms 500\n  ebb call --addr 127.0.0.1:7200 Greeter.hello '{\"name\":\"x\"}'   (your own node binary)\n\nExits 1 with the reason on failure, and says whether the call may have\nrun: at-most-once methods (like Demo.incr) never run twice."
)]
pub struct Args {
    /// The node's (or a gateway's) address, e.g. 127.0.0.1:7000.
    #[arg(long, value_parser = super::addr::connect)]
    pub addr: String,
    /// SERVICE.METHOD, e.g. Demo.incr; the node lists its methods on a mistake.
    pub method: String,
    /// Arguments as a JSON object keyed by parameter name, e.g. '{"key":"a"}';
    /// `@FILE` reads them from FILE and `-` from standard input (for
    /// arguments too long for a command line).
    #[arg(default_value = "{}")]
    pub args: String,
    /// Give up after this many milliseconds (resends included): a whole
    /// number from 1.
    #[arg(long, default_value_t = 5_000, value_parser = timeout_millis, allow_hyphen_values = true)]
    pub timeout_ms: u64,
    /// Connect over TLS, trusting node certificates issued by a CA in this
    /// PEM file (the certificate must name the host of --addr).
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// With --tls-ca: present this certificate (PEM) to a node that
    /// requires client certificates (mutual TLS). Needs --tls-key.
    #[arg(long, value_name = "PEM", requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// With --tls-ca: check the node's certificate against this DNS name
    /// instead of the host of --addr (a container node of `ebb up`, whose
    /// address no certificate names, with `pool.node_tls.server_name`).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,
    /// Present the bearer token in FILE (one token; blank lines and lines
    /// starting with # are skipped), for a gateway or node that requires
    /// one (`auth.token_file` in `ebb up`'s config). Without TLS the token
    /// crosses the network in the clear.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
}

/// Parses `--timeout-ms`, saying what is accepted (a negative number would
/// otherwise get clap's advice to write `-- -1`).
fn timeout_millis(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) | Err(_) => Err(format!(
            "{s:?} is not a timeout: give a whole number of milliseconds from 1, e.g. 5000"
        )),
        Ok(ms) => Ok(ms),
    }
}

/// The JSON text of the arguments: given inline, from `@FILE`, or from
/// standard input for `-`; and where it came from, for an error about it
/// (empty when inline: the message quotes it).
fn argument_text(args: &str) -> anyhow::Result<(String, String)> {
    use std::io::Read;
    if args == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the arguments from standard input")?;
        return Ok((text, " read from standard input (given as -)".to_owned()));
    }
    if let Some(path) = args.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the arguments from {path:?} (given as @FILE)"))?;
        return Ok((text, format!(" read from {path:?} (given as @FILE)")));
    }
    Ok((args.to_owned(), String::new()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let Some((service, method)) = args.method.split_once('.') else {
        bail!(
            "method {:?} must be SERVICE.METHOD, e.g. Demo.incr",
            args.method
        );
    };
    let (text, source) = argument_text(&args.args)?;
    let json: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        // A 10 MB argument quoted back would drown the message.
        let shown: String = text.chars().take(MAX_SHOWN_ARGUMENT_CHARS).collect();
        format!(
            "arguments {shown:?}{}{source} are not valid JSON; pass an object keyed by parameter name, e.g. '{{\"key\":\"a\"}}'",
            if shown.len() < text.len() { "..." } else { "" }
        )
    })?;
    // One call carries one frame: say so before connecting, rather than
    // leave it to a refusal that reads like a wrong argument.
    let encoded = serde_json::to_vec(&json)
        .context("encoding the arguments")?
        .len();
    if encoded > MAX_PAYLOAD_BYTES {
        bail!(
            "arguments{source} are {encoded} bytes as JSON, over the {MAX_PAYLOAD_BYTES} bytes one call carries; nothing was sent"
        );
    }
    let tls = match &args.tls_ca {
        Some(ca) => {
            let identity = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
            let tls = ClientTls::from_pem_files(ca, identity)?;
            Some(match &args.tls_server_name {
                Some(name) => tls
                    .with_server_name(name)
                    .with_context(|| format!("--tls-server-name {name:?}"))?,
                None => tls,
            })
        }
        None => None,
    };
    let token = match &args.token_file {
        Some(path) => Some(ebb::rpc::auth::read_token_file(path).with_context(|| {
            format!(
                "--token-file {}: give a file holding one token",
                path.display()
            )
        })?),
        None => None,
    };
    let timeout = Nanos::from_millis(args.timeout_ms);
    let options = CallOptions::default().with_timeout(timeout);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let credentials = Credentials { tls, token };
        let client = TcpClient::connect_as(&args.addr, TcpClientConfig::default(), credentials)
            .await
            .map_err(|e| explain(e, &args))?;
        let described = client
            .describe(timeout)
            .await
            .map_err(|e| explain(e, &args))?;
        let m = find(&described, service, method)?;
        let reply = client
            .call_json(m.id, m.idempotent, &json, options)
            .await
            .map_err(|e| explain(e, &args))?;
        super::print_out(&format!("{reply}\n"))
    })
}

/// The method `service.method` of the node's description, or an error that
/// names what the node does serve.
fn find<'a>(
    d: &'a ServiceDescription,
    service: &str,
    method: &str,
) -> anyhow::Result<&'a ebb::rpc::service::MethodDescription> {
    if d.service != service {
        bail!(
            "unknown service {service:?}: the node serves {} (methods: {})",
            d.service,
            d.method_names()
        );
    }
    d.method(method).with_context(|| {
        format!(
            "unknown method {service}.{method} (methods of {}: {})",
            d.service,
            d.method_names()
        )
    })
}

/// Turns a call failure into a message that says what to do about it and
/// whether the call may have run.
fn explain(e: CallError, args: &Args) -> anyhow::Error {
    let hint = match &e {
        CallError::ConnectionLost { sent: false, .. } if args.tls_ca.is_some() => {
            "is a node listening there with TLS, its certificate issued by the CA in --tls-ca and naming the host of --addr (or --tls-server-name)?"
        }
        CallError::ConnectionLost { sent: false, .. } => {
            "is `ebb node` (or `ebb up`) listening at that address?"
        }
        CallError::Refused {
            reason: Refusal::Unauthorized,
            ..
        } if args.token_file.is_some() => {
            "the server does not accept the token in --token-file; check the file"
        }
        CallError::Refused {
            reason: Refusal::Unauthorized,
            ..
        } => "the server requires a bearer token: pass --token-file FILE",
        CallError::Refused {
            reason: Refusal::CallerInFlight,
            ..
        } => {
            "you already have the most calls in flight this server allows one caller; retry when some end"
        }
        CallError::Refused { .. } => "the node refused it without running it; retry later",
        CallError::Overloaded { .. } => {
            "the gateway cannot meet --timeout-ms with the work ahead of it; retry after the time it names, or raise --timeout-ms"
        }
        CallError::OutcomeUnknown { .. } => {
            "the node restarted while the call was outstanding: it ran at most once, maybe not at all, and was not re-sent; check the state before retrying"
        }
        CallError::DeadlineExceeded { sent: true, .. } => {
            "no reply within --timeout-ms; raise it, or check the state before retrying"
        }
        // Never sent: no connection finished its handshake. A stopped
        // node does that, and so does a node that serves TLS to a plain
        // client, or requires a client certificate the client lacks.
        CallError::DeadlineExceeded { sent: false, .. } if args.tls_ca.is_none() => {
            "no connection finished its handshake within --timeout-ms: the node is stopped or too busy, or it serves TLS (then pass --tls-ca)"
        }
        CallError::DeadlineExceeded { sent: false, .. } if args.tls_cert.is_none() => {
            "no connection finished its handshake within --timeout-ms: the node is stopped or too busy, or it requires a client certificate (then pass --tls-cert and --tls-key)"
        }
        CallError::DeadlineExceeded { sent: false, .. } => {
            "no connection finished its handshake within --timeout-ms: the node is stopped or too busy, or it refuses --tls-cert (not issued by the CA of its --tls-client-ca?)"
        }
        CallError::ServerUnresponsive { .. } => "the node stopped answering heartbeats",
        CallError::BadRequest { .. } => "check the argument names and types",
        _ => "",
    };
    let ran = if e.may_have_run() {
        "it may have run"
    } else {
        "it did not run"
    };
    // Some errors say it themselves ("never sent: it did not run").
    let text = e.to_string();
    let what = if text.contains(ran) {
        format!("{} on {} failed: {text}", args.method, args.addr)
    } else {
        format!("{} on {} failed ({ran}): {text}", args.method, args.addr)
    };
    if hint.is_empty() {
        anyhow::anyhow!(what)
    } else {
        anyhow::anyhow!("{what}\n  ({hint})")
    }
}
