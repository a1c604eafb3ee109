//! A user's own service, written the way any ebb service is: a trait under
//! `#[ebb::service]`, an implementation, and a node binary
//! (`src/bin/greeter-node.rs`) that serves it with `ebb::node`.
//!
//! The macro generates `GreeterClient` (the stub callers use),
//! `GreeterServer` (the dispatch a node serves) and `GreeterCodec` (the
//! method table and JSON adapter).

use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// How many names the guestbook keeps; past it, `sign` is refused.
pub const MAX_SIGNATURES: usize = 10_000;
/// The longest name `sign` accepts, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// The greeter's interface. Method ids follow this order; append new
/// methods at the end so old clients keep working.
#[ebb::service]
pub trait Greeter {
    /// A greeting for `name`. Idempotent: the client may resend it after a
    /// timeout or a reconnect, so it may run more than once.
    #[idempotent]
    async fn hello(&self, name: String) -> String;

    /// Signs the guestbook and returns how many signatures it holds now.
    /// At-most-once (the default): a resent copy gets the saved reply, so
    /// no one signs twice for one call.
    async fn sign(&self, name: String) -> Result<u64, SignError>;
}

/// Why `sign` refused; sent back as its reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SignError {
    #[error("the guestbook is full: it holds at most {max} names")]
    Full { max: usize },
    #[error("a name is at most {max} bytes; this one has {len}")]
    NameTooLong { len: usize, max: usize },
}

/// The in-memory guestbook.
#[derive(Debug, Default)]
pub struct Guestbook {
    names: Mutex<Vec<String>>,
}

impl Guestbook {
    pub fn new() -> Guestbook {
        Guestbook::default()
    }
}

impl Greeter for Guestbook {
    async fn hello(&self, name: String) -> String {
        format!("hello, {name}")
    }

    async fn sign(&self, name: String) -> Result<u64, SignError> {
        if name.len() > MAX_NAME_BYTES {
            return Err(SignError::NameTooLong {
                len: name.len(),
                max: MAX_NAME_BYTES,
            });
        }
        // Every update is one push, so a poisoned lock still guards a
        // consistent list.
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if names.len() >= MAX_SIGNATURES {
            return Err(SignError::Full {
                max: MAX_SIGNATURES,
            });
        }
        names.push(name);
        Ok(names.len() as u64)
    }
}
