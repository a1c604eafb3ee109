//! `[pool.node_tls]`: TLS between the gateway and the nodes it starts.
//! Nodes serve with `cert` and `key` (`ebb node --tls-cert --tls-key`);
//! the gateway trusts certificates `ca` issued. With `client_ca`,
//! `gateway_cert` and `gateway_key` the TLS is mutual: nodes start with
//! `--tls-client-ca` and serve only callers holding a certificate from it,
//! which the gateway presents.
//!
//! Every file is loaded here, by the same code the node and the gateway
//! load it with, so `ebb up --check` finds a wrong path, a file of the
//! wrong kind or a key that does not go with its certificate, and names
//! the key that holds it.

use std::path::{Path, PathBuf};

use ebb::rpc::transport::{ClientTls, ServerTls, TlsError};

use super::checked::{ConfigError, Kind, NodeTls, bad};
use super::file::NodeTls as NodeTlsFile;

const CA: &str = "pool.node_tls.ca";
const CERT: &str = "pool.node_tls.cert";
const KEY: &str = "pool.node_tls.key";
const SERVER_NAME: &str = "pool.node_tls.server_name";
const CLIENT_CA: &str = "pool.node_tls.client_ca";
const GATEWAY_CERT: &str = "pool.node_tls.gateway_cert";
const GATEWAY_KEY: &str = "pool.node_tls.gateway_key";

/// What each file is, in the words an error uses.
fn what(key: &str) -> &'static str {
    match key {
        CA => "the CA certificate (PEM) that issued the node certificate; the gateway trusts it",
        CERT => "the certificate chain (PEM) every node serves with",
        KEY => "the private key (PEM) of pool.node_tls.cert",
        CLIENT_CA => {
            "the CA certificate (PEM) nodes require the gateway's certificate to come from"
        }
        GATEWAY_CERT => "the certificate (PEM) the gateway presents to nodes",
        _ => "the private key (PEM) of pool.node_tls.gateway_cert",
    }
}

pub(super) fn check_node_tls(t: &NodeTlsFile, kind: Kind) -> Result<NodeTls, ConfigError> {
    let required = |key: &'static str, v: &Option<PathBuf>| {
        v.as_deref().map(|p| absolute(key, p)).unwrap_or_else(|| {
            Err(bad(
                key,
                "(missing)",
                format!(
                    "{}; [pool.node_tls] needs ca, cert and key (mutual TLS adds client_ca, gateway_cert and gateway_key)",
                    what(key)
                ),
            ))
        })
    };
    let ca = required(CA, &t.ca)?;
    let cert = required(CERT, &t.cert)?;
    let key = required(KEY, &t.key)?;
    let mutual = match (&t.client_ca, &t.gateway_cert, &t.gateway_key) {
        (None, None, None) => None,
        (Some(_), Some(_), Some(_)) => Some((
            required(CLIENT_CA, &t.client_ca)?,
            required(GATEWAY_CERT, &t.gateway_cert)?,
            required(GATEWAY_KEY, &t.gateway_key)?,
        )),
        (client_ca, gateway_cert, _) => {
            let missing = if client_ca.is_none() {
                CLIENT_CA
            } else if gateway_cert.is_none() {
                GATEWAY_CERT
            } else {
                GATEWAY_KEY
            };
            return Err(bad(
                missing,
                "(missing)",
                format!(
                    "{}; mutual TLS needs client_ca, gateway_cert and gateway_key together (or none of them)",
                    what(missing)
                ),
            ));
        }
    };
    if kind == Kind::Container && t.server_name.is_none() {
        return Err(bad(
            SERVER_NAME,
            "(missing)",
            "container nodes are dialled at an address each gets as it starts (10.213.x.y), which no certificate can name in advance: give the DNS name the node certificate carries, e.g. \"node.ebb\"",
        ));
    }
    // Each file by its key: the path as loaded and as written.
    let written = |key: &str| match key {
        CA => t.ca.as_deref(),
        CERT => t.cert.as_deref(),
        KEY => t.key.as_deref(),
        CLIENT_CA => t.client_ca.as_deref(),
        GATEWAY_CERT => t.gateway_cert.as_deref(),
        _ => t.gateway_key.as_deref(),
    };
    let files: Vec<(&'static str, &Path, &Path)> = [(CA, &ca), (CERT, &cert), (KEY, &key)]
        .into_iter()
        .map(|(k, p)| (k, p.as_path()))
        .chain(mutual.iter().flat_map(|(c, gc, gk)| {
            [
                (CLIENT_CA, c.as_path()),
                (GATEWAY_CERT, gc.as_path()),
                (GATEWAY_KEY, gk.as_path()),
            ]
        }))
        .map(|(k, p)| (k, p, written(k).unwrap_or(p)))
        .collect();
    let client_ca = mutual.as_ref().map(|(c, _, _)| c.clone());
    let server = ServerTls::from_pem_files(&cert, &key, client_ca.as_deref())
        .map_err(|e| tls_error(e, &files, KEY))?;
    let identity = mutual
        .as_ref()
        .map(|(_, gc, gk)| (gc.as_path(), gk.as_path()));
    let mut client =
        ClientTls::from_pem_files(&ca, identity).map_err(|e| tls_error(e, &files, GATEWAY_KEY))?;
    if let Some(name) = &t.server_name {
        client = client.with_server_name(name).map_err(|e| {
            bad(
                SERVER_NAME,
                name,
                format!("{e}: give the DNS name (or IP address) node certificates carry"),
            )
        })?;
    }
    Ok(NodeTls {
        cert,
        key,
        client_ca,
        server_name: t.server_name.clone(),
        server,
        client,
    })
}

/// The path made absolute, so a node started elsewhere finds it; a file
/// that is not there is named with its key.
fn absolute(key: &'static str, p: &Path) -> Result<PathBuf, ConfigError> {
    std::fs::canonicalize(p).map_err(|e| bad(key, p, format!("cannot read it: {e}; {}", what(key))))
}

/// A loading error named by the key holding the file it is about (a
/// certificate and key that do not go together: the key's key), with the
/// path as the config wrote it.
fn tls_error(
    e: TlsError,
    files: &[(&'static str, &Path, &Path)],
    mismatch: &'static str,
) -> ConfigError {
    let path = match &e {
        TlsError::Read { path, .. } | TlsError::Bad { path, .. } => Some(path.as_path()),
        TlsError::Mismatch { key, .. } => Some(key.as_path()),
        _ => None,
    };
    let (key, value) = path
        .and_then(|p| files.iter().find(|(_, loaded, _)| *loaded == p))
        .map_or((mismatch, path.unwrap_or(Path::new(""))), |(k, _, w)| {
            (*k, *w)
        });
    bad(key, value, format!("{e}; {}", what(key)))
}
