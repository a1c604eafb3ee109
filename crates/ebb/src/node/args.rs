//! A node's command line, parsed by hand: a node binary should not need a
//! command-line framework, and the grammar is three flags.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use crate::rpc::transport::workers::{MAX_WORKER_THREADS, default_threads};

use super::NodeError;

/// Where a node listens when given neither `--listen` nor `--listen-fd`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7000";

/// Where the node accepts connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// Bind this address (port 0 picks a free port).
    Addr(String),
    /// Adopt this inherited, already listening socket.
    Fd(i32),
}

/// A node's settings, from its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeArgs {
    pub listen: Listen,
    /// Worker threads for the service's `#[blocking]` methods: at most this
    /// many run at once, off the I/O thread. The node's CPU capacity; `None`
    /// means one per core the process may use.
    pub threads: Option<NonZeroUsize>,
    /// Serve over TLS with these files; plain TCP when `None`.
    pub tls: Option<TlsFiles>,
    /// Serve only connections whose handshake presents a bearer token
    /// listed in this file (`ebb_rpc::auth::Tokens`'s format); `None`:
    /// no token required.
    pub token_file: Option<PathBuf>,
}

/// A node's TLS files (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Set: mutual TLS; only clients with a certificate a CA in this file
    /// issued are served.
    pub client_ca: Option<PathBuf>,
}

impl NodeArgs {
    /// The worker threads this node runs, with the default applied.
    pub fn threads(&self) -> NonZeroUsize {
        self.threads.unwrap_or_else(default_threads)
    }
}

impl Default for NodeArgs {
    fn default() -> NodeArgs {
        NodeArgs {
            listen: Listen::Addr(DEFAULT_LISTEN.to_owned()),
            threads: None,
            tls: None,
            token_file: None,
        }
    }
}

/// What the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(NodeArgs),
    Help,
}

/// The help text of a node binary called `program`.
pub fn usage(program: &str) -> String {
    let cores = default_threads();
    format!(
        "Usage: {program} [--listen ADDR | --listen-fd FD] [--threads N] [--token-file FILE]\n\
         \n\
         Serves until killed. Prints `node listening on ADDR` once it accepts\n\
         connections, so a script can bind port 0 and read the address back.\n\
         \n\
         Options:\n  \
           --listen ADDR    address to listen on (port 0 picks a free port) [default: {DEFAULT_LISTEN}]\n  \
           --listen-fd FD   serve on this inherited listening TCP socket instead of binding\n  \
           --threads N      worker threads for CPU-bound (#[blocking]) methods: the node's\n                   \
capacity [default: the cores available, here {cores}]\n  \
           --tls-cert PEM   serve over TLS with this certificate chain (needs --tls-key)\n  \
           --tls-key PEM    the private key of --tls-cert\n  \
           --tls-client-ca PEM  mutual TLS: serve only clients with a certificate from these CAs\n  \
           --token-file FILE  serve only callers presenting a bearer token listed in FILE\n                   \
(one per line; # starts a comment); without TLS a token crosses in clear\n  \
           -h, --help       print this help\n"
    )
}

impl NodeArgs {
    /// Parses the arguments after the program name. `--flag VALUE` and
    /// `--flag=VALUE` are both accepted.
    pub fn parse<I, S>(args: I) -> Result<Parsed, NodeError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut addr: Option<String> = None;
        let mut fd: Option<i32> = None;
        let mut threads: Option<NonZeroUsize> = None;
        let (mut cert, mut key, mut client_ca) = (None, None, None);
        let mut token_file: Option<PathBuf> = None;
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = |what: &str| {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| NodeError::Usage(format!("{flag} needs a value: {what}")))
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Parsed::Help),
                "--listen" => {
                    addr = Some(value("an address such as 127.0.0.1:7000")?);
                }
                "--listen-fd" => {
                    let v = value("the number of an inherited listening socket, e.g. 3")?;
                    fd = Some(v.parse().map_err(|_| {
                        NodeError::Usage(format!(
                            "--listen-fd {v:?} is not a descriptor number; \
                             pass the number of an inherited listening socket, e.g. 3"
                        ))
                    })?);
                }
                "--threads" => {
                    let v = value("a number of worker threads, e.g. 4")?;
                    threads = Some(
                        parse_threads(&v)
                            .map_err(|e| NodeError::Usage(format!("--threads {v:?}: {e}")))?,
                    );
                }
                "--tls-cert" => cert = Some(PathBuf::from(value("a PEM certificate file")?)),
                "--tls-key" => key = Some(PathBuf::from(value("a PEM private key file")?)),
                "--tls-client-ca" => {
                    client_ca = Some(PathBuf::from(value("a PEM file of CA certificates")?));
                }
                "--token-file" => {
                    token_file = Some(PathBuf::from(value(
                        "a file of bearer tokens, one per line",
                    )?));
                }
                other => {
                    return Err(NodeError::Usage(format!(
                        "unknown argument {other:?}; accepted: --listen ADDR, --listen-fd FD, --threads N, \
                         --tls-cert PEM, --tls-key PEM, --tls-client-ca PEM, --token-file FILE, --help"
                    )));
                }
            }
        }
        let listen = match (addr, fd) {
            (Some(_), Some(_)) => {
                return Err(NodeError::Usage(
                    "--listen and --listen-fd exclude each other: bind an address or adopt a socket, not both"
                        .to_owned(),
                ));
            }
            (_, Some(fd)) => Listen::Fd(fd),
            (Some(addr), None) if !has_port(&addr) => {
                return Err(NodeError::Usage(format!(
                    "--listen {addr:?}: expected HOST:PORT, e.g. 127.0.0.1:7000 (port 0 picks a free port)"
                )));
            }
            (Some(addr), None) => Listen::Addr(addr),
            (None, None) => Listen::Addr(DEFAULT_LISTEN.to_owned()),
        };
        let tls = match (cert, key, client_ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), client_ca) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            _ => {
                return Err(NodeError::Usage(
                    "TLS needs both --tls-cert and --tls-key (and --tls-client-ca only with them)"
                        .to_owned(),
                ));
            }
        };
        Ok(Parsed::Run(NodeArgs {
            listen,
            threads,
            tls,
            token_file,
        }))
    }
}

/// Whether `addr` ends in `:PORT` after a host, so that a missing port is a
/// usage error naming `--listen` rather than a bind failure.
fn has_port(addr: &str) -> bool {
    addr.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// A worker-thread count that is not a number from 1 to
/// `MAX_WORKER_THREADS`; it says what is accepted, since a flag parser
/// prints it next to the value given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected a number of worker threads from 1 to {MAX_WORKER_THREADS}")]
pub struct ThreadCountError;

/// Parses a worker-thread count: 1 to `MAX_WORKER_THREADS`.
pub fn parse_threads(v: &str) -> Result<NonZeroUsize, ThreadCountError> {
    v.parse::<NonZeroUsize>()
        .ok()
        .filter(|n| n.get() <= MAX_WORKER_THREADS)
        .ok_or(ThreadCountError)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> NodeArgs {
        match NodeArgs::parse(args.iter().copied()) {
            Ok(Parsed::Run(a)) => a,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    fn usage_error(args: &[&str]) -> String {
        match NodeArgs::parse(args.iter().copied()) {
            Err(NodeError::Usage(m)) => m,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn both_spellings_and_the_default() {
        assert_eq!(run(&[]).listen, Listen::Addr(DEFAULT_LISTEN.into()));
        assert_eq!(
            run(&["--listen", "0.0.0.0:1"]).listen,
            Listen::Addr("0.0.0.0:1".into())
        );
        assert_eq!(
            run(&["--listen=127.0.0.1:0"]).listen,
            Listen::Addr("127.0.0.1:0".into())
        );
        assert_eq!(run(&["--listen-fd", "3"]).listen, Listen::Fd(3));
        assert_eq!(run(&["--listen-fd=4"]).listen, Listen::Fd(4));
        assert_eq!(run(&[]).threads, None);
        assert_eq!(run(&[]).threads(), default_threads());
        assert_eq!(run(&["--threads", "3"]).threads().get(), 3);
        assert_eq!(run(&["--threads=1"]).threads().get(), 1);
        assert_eq!(run(&[]).tls, None);
        assert_eq!(run(&[]).token_file, None);
        assert_eq!(
            run(&["--token-file", "t.txt"]).token_file,
            Some(PathBuf::from("t.txt"))
        );
        assert_eq!(
            run(&["--token-file=t.txt"]).token_file,
            Some(PathBuf::from("t.txt"))
        );
        assert_eq!(
            run(&[
                "--tls-cert",
                "c.pem",
                "--tls-key=k.pem",
                "--tls-client-ca",
                "ca.pem"
            ])
            .tls,
            Some(TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into(),
                client_ca: Some("ca.pem".into()),
            })
        );
        assert_eq!(
            NodeArgs::parse(["--listen", "x", "--help"]).ok(),
            Some(Parsed::Help)
        );
    }

    #[test]
    fn bad_input_names_the_argument_and_what_is_accepted() {
        let m = usage_error(&["--port", "1"]);
        assert!(
            m.contains("\"--port\"") && m.contains("--listen ADDR"),
            "{m}"
        );
        let m = usage_error(&["--listen"]);
        assert!(m.contains("--listen needs a value"), "{m}");
        let m = usage_error(&["--listen-fd", "three"]);
        assert!(m.contains("\"three\"") && m.contains("e.g. 3"), "{m}");
        for bad in ["0", "-1", "many", "1025"] {
            let m = usage_error(&["--threads", bad]);
            assert!(
                m.contains(&format!("{bad:?}")) && m.contains("from 1 to 1024"),
                "{m}"
            );
        }
        let m = usage_error(&["--tls-cert", "c.pem"]);
        assert!(m.contains("--tls-key"), "{m}");
        let m = usage_error(&["--tls-client-ca", "ca.pem"]);
        assert!(m.contains("--tls-cert"), "{m}");
        let m = usage_error(&["--token-file"]);
        assert!(m.contains("--token-file needs a value"), "{m}");
        let m = usage_error(&["--listen", "a:1", "--listen-fd", "3"]);
        assert!(m.contains("exclude each other"), "{m}");
        for bad in ["127.0.0.1", ":7000", "127.0.0.1:99999"] {
            let m = usage_error(&["--listen", bad]);
            assert!(
                m.contains(&format!("--listen {bad:?}")) && m.contains("HOST:PORT"),
                "{m}"
            );
        }
    }
}
