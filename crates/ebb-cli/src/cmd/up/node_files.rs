//! The files a node is started with (its bearer token file, its TLS
//! certificate, key and client CA), and the
//! flags that name them. A thread or process node reads them at their host
//! paths; a container or VM node cannot see the host's file system, so
//! its provider copies each file in, at a fixed path under
//! [`INSIDE_DIR`], and the flags name that path.

use std::path::{Path, PathBuf};

use ebb_node::sandbox::FileIn;

use super::config::{Checked, Kind};

/// Where copied files live inside a container or VM node.
pub const INSIDE_DIR: &str = "/etc/ebb";
/// The name of the copy of `pool.node_token_file`.
pub const TOKEN_NAME: &str = "node.token";
/// The names of the copies of `[pool.node_tls]`'s node-side files.
pub const TLS_CERT_NAME: &str = "tls-cert.pem";
pub const TLS_KEY_NAME: &str = "tls-key.pem";
pub const TLS_CLIENT_CA_NAME: &str = "tls-client-ca.pem";

/// Where a node that cannot see the host's files finds its copy of `name`.
pub fn inside(name: &str) -> PathBuf {
    PathBuf::from(INSIDE_DIR).join(name)
}

/// The flags that point a node at its files, and the files its provider
/// must copy in first (none for thread and process nodes).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodeFiles {
    pub args: Vec<String>,
    pub copy_in: Vec<FileIn>,
}

impl NodeFiles {
    pub fn for_nodes(c: &Checked) -> NodeFiles {
        let mut files = NodeFiles::default();
        if let Some(t) = &c.node_tokens {
            files.add(c.kind, "--token-file", &t.path, TOKEN_NAME);
        }
        if let Some(t) = &c.node_tls {
            files.add(c.kind, "--tls-cert", &t.cert, TLS_CERT_NAME);
            files.add(c.kind, "--tls-key", &t.key, TLS_KEY_NAME);
            if let Some(ca) = &t.client_ca {
                files.add(c.kind, "--tls-client-ca", ca, TLS_CLIENT_CA_NAME);
            }
        }
        files
    }

    /// `flag PATH`, with PATH the host's for nodes that share its file
    /// system, or `INSIDE_DIR/name` (and a copy there) for the others.
    fn add(&mut self, kind: Kind, flag: &str, host: &Path, name: &str) {
        let path = match kind {
            Kind::Thread | Kind::Process => host.to_owned(),
            Kind::Container | Kind::Vm => {
                let inside = inside(name);
                self.copy_in.push(FileIn {
                    host: host.to_owned(),
                    inside: inside.clone(),
                });
                inside
            }
        };
        self.args.push(flag.to_owned());
        self.args.push(path.display().to_string());
    }
}
