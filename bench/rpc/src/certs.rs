//! Throw-away TLS certificates for the TLS rows: a CA and a server
//! certificate for `localhost` and 127.0.0.1, written as PEM files that
//! both ebb and tonic load.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// Where the PEM files of one benchmark run are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub dir: PathBuf,
    /// Set when [`generate`] made `dir`: it is removed when the last clone
    /// drops, so an ended or failed run leaves no keys behind.
    _owner: Option<Arc<tempfile::TempDir>>,
}

impl TlsFiles {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The files in `dir`, as [`generate`] wrote them.
    pub fn at(dir: &Path) -> TlsFiles {
        TlsFiles {
            dir: dir.to_owned(),
            _owner: None,
        }
    }
}

/// Generates a CA and a server certificate it issued into a fresh
/// directory under the system's temporary directory, removed with the
/// returned files.
pub fn generate() -> anyhow::Result<TlsFiles> {
    let owner = tempfile::Builder::new()
        .prefix("rpc-bench-tls-")
        .tempdir()
        .context("creating a directory for the TLS files")?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "rpc-bench CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
    let files = TlsFiles {
        dir: owner.path().to_owned(),
        _owner: Some(Arc::new(owner)),
    };
    for (path, pem) in [
        (files.ca(), ca_cert.pem()),
        (files.cert(), cert.pem()),
        (files.key(), key.serialize_pem()),
    ] {
        std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files)
}
