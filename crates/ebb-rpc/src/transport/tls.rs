//! TLS for ebb RPC (rustls, ring provider): certificates and keys from PEM
//! files, and mutual TLS as an option, so a node serves only clients that
//! hold a certificate issued by the configured CA.
//!
//! Plain TCP stays for loopback; a connection is TLS or plain as its
//! server is configured, never negotiated. Every failure to load a
//! certificate or key names the file and says what was expected, since the
//! usual mistake is a wrong path or a file of the wrong kind.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Longest a TLS handshake may take on a server before the connection is
/// dropped, so a peer that opens a socket and says nothing cannot hold a
/// connection slot.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

/// A certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} file {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the {what} file {} is not usable: {reason}", path.display())]
    Bad {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the certificate {} and the key {} do not go together: {source}", cert.display(), key.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("{name:?} is not a DNS name or IP address a certificate can name")]
    ServerName { name: String },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file; at least one.
fn load_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let bad = |reason: String| TlsError::Bad {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("{e}")))?;
    if certs.is_empty() {
        return Err(bad(
            "no PEM certificate in it (expected a \"-----BEGIN CERTIFICATE-----\" block)".into(),
        ));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("private key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Bad {
        what: "private key",
        path: path.to_owned(),
        reason: format!(
            "{e} (expected a \"-----BEGIN PRIVATE KEY-----\", RSA or EC private key block)"
        ),
    })
}

fn load_roots(what: &'static str, path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(what, path)? {
        roots.add(cert).map_err(|e| TlsError::Bad {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// Why a certificate and its key could not be used together: a
/// certificate rustls cannot read at all (an X.509 v1 certificate, as
/// `openssl x509 -req` makes without extensions) is that file's fault, not
/// a mismatch, and is named as such.
fn pairing_error(cert: &Path, key: &Path, source: rustls::Error) -> TlsError {
    match source {
        rustls::Error::InvalidCertificate(e) => TlsError::Bad {
            what: "certificate",
            path: cert.to_owned(),
            reason: format!(
                "{e:?} (expected an X.509 v3 certificate, e.g. made with an -extfile or -addext)"
            ),
        },
        source => TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        },
    }
}

/// A server's TLS side: what [`Server::with_tls`](super::Server::with_tls)
/// takes. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The server presents the certificate chain in `cert` with the key in
    /// `key`. With `client_ca`, only clients presenting a certificate
    /// issued by a CA in that file complete the handshake (mutual TLS).
    pub fn from_pem_files(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Result<ServerTls, TlsError> {
        let chain = load_certs("certificate", cert)?;
        let private = load_key(key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            Some(ca) => {
                let roots = load_roots("client CA", ca)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(|e| TlsError::Bad {
                        what: "client CA",
                        path: ca.to_owned(),
                        reason: e.to_string(),
                    })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(chain, private)
            .map_err(|source| pairing_error(cert, key, source))?;
        Ok(ServerTls::from_config(Arc::new(config)))
    }

    /// From a rustls configuration built by the caller.
    pub fn from_config(config: Arc<ServerConfig>) -> ServerTls {
        ServerTls {
            acceptor: TlsAcceptor::from(config),
        }
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

/// A client's TLS side: which CAs it trusts for servers, and optionally
/// its own certificate for servers that require one. Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    /// The name the server's certificate must carry, when it is not the
    /// host the client dials (see [`ClientTls::with_server_name`]).
    name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts servers whose certificate a CA in `ca` issued; presents the
    /// certificate and key of `identity` when given (mutual TLS).
    pub fn from_pem_files(
        ca: &Path,
        identity: Option<(&Path, &Path)>,
    ) -> Result<ClientTls, TlsError> {
        let roots = load_roots("CA", ca)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(load_certs("certificate", cert)?, load_key(key)?)
                .map_err(|source| pairing_error(cert, key, source))?,
            None => builder.with_no_client_auth(),
        };
        Ok(ClientTls::from_config(Arc::new(config)))
    }

    pub fn from_config(config: Arc<ClientConfig>) -> ClientTls {
        ClientTls {
            connector: TlsConnector::from(config),
            name: None,
        }
    }

    /// Checks every server's certificate against `name` instead of the
    /// host the client dials: servers whose addresses are chosen as they
    /// start (a pool of container nodes, each at an address of its own)
    /// can then share one certificate naming them all.
    pub fn with_server_name(mut self, name: &str) -> Result<ClientTls, TlsError> {
        let parsed = ServerName::try_from(name.to_owned()).map_err(|_| TlsError::ServerName {
            name: name.to_owned(),
        })?;
        self.name = Some(parsed);
        Ok(self)
    }

    /// Runs the handshake over `tcp`, checking the server's certificate
    /// against the configured server name, or else the host part of
    /// `addr` (a DNS name or an IP address).
    pub(crate) async fn connect(
        &self,
        addr: &str,
        tcp: TcpStream,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = match &self.name {
            Some(n) => n.clone(),
            None => server_name(addr)?,
        };
        self.connector.connect(name, tcp).await
    }
}

/// The name a server's certificate must carry: the host of `host:port`,
/// with IPv6 brackets removed.
fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} is not a DNS name or IP address a certificate can name: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_certificate_is_named_and_not_called_a_mismatch() {
        let (cert, key) = (Path::new("v1.pem"), Path::new("v1.key"));
        let e = pairing_error(
            cert,
            key,
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding),
        );
        assert!(matches!(e, TlsError::Bad { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("v1.pem") && text.contains("X.509 v3"),
            "{text}"
        );
        let e = pairing_error(
            cert,
            key,
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch),
        );
        assert!(matches!(e, TlsError::Mismatch { .. }), "{e:?}");
    }

    #[test]
    fn server_names_come_from_the_host_part() {
        assert!(matches!(
            server_name("127.0.0.1:7000"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]:7000"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("node.example:7000"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("bad name:1").is_err());
    }
}
