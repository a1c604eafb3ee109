//! Bearer tokens: who may call a server that requires them.
//!
//! A server configured with [`Tokens`] authorizes a connection by the
//! token its handshake carries (`wire::Ping::token`); the token's line in
//! the file is the caller's identity, for per-caller bounds. Tokens are
//! compared in constant time (the comparison does not stop at the first
//! differing byte, and every token is compared), so timing does not reveal
//! a token's prefix. The gateway's HTTP ingress checks the same tokens in
//! its `Authorization` header.

use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq;

pub use crate::wire::MAX_TOKEN_BYTES;

/// Tokens a file may hold at most.
pub const MAX_TOKENS: usize = 1_024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("cannot read the token file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("the token file {path} holds no token (one per line; # starts a comment)")]
    Empty { path: PathBuf },
    #[error("the token file {path}, line {line}: {why}")]
    BadToken {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error(
        "the token file {path} holds {count} tokens; a caller's file holds exactly one (its token)"
    )]
    NotOne { path: PathBuf, count: usize },
}

/// The bearer tokens a server accepts.
#[derive(Clone)]
pub struct Tokens {
    tokens: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Tokens {
    /// Never prints a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.tokens.len())
    }
}

impl Tokens {
    /// One token per line; blank lines and lines starting with `#` are
    /// skipped; surrounding whitespace is not part of a token.
    pub fn from_file(path: &Path) -> Result<Tokens, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Tokens::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Tokens, AuthError> {
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let bad = |why: String| AuthError::BadToken {
                path: path.to_owned(),
                line: i + 1,
                why,
            };
            if t.len() > MAX_TOKEN_BYTES {
                return Err(bad(format!(
                    "a token is at most {MAX_TOKEN_BYTES} bytes; this one has {}",
                    t.len()
                )));
            }
            if t.chars().any(char::is_whitespace) {
                return Err(bad("a token holds no whitespace".into()));
            }
            if tokens.len() == MAX_TOKENS {
                return Err(bad(format!("at most {MAX_TOKENS} tokens")));
            }
            tokens.push(t.as_bytes().to_vec());
        }
        if tokens.is_empty() {
            return Err(AuthError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Tokens { tokens })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The index of `given` among the tokens, or `None`. Every token is
    /// compared, whatever matched.
    pub fn find(&self, given: &[u8]) -> Option<usize> {
        let mut found = None;
        for (i, t) in self.tokens.iter().enumerate() {
            if bool::from(t.as_slice().ct_eq(given)) {
                found = Some(i);
            }
        }
        found
    }

    /// The index of the token an HTTP `Authorization` header value carries
    /// (`Bearer TOKEN`), or `None`.
    pub fn check(&self, authorization: Option<&str>) -> Option<usize> {
        let given = authorization?.strip_prefix("Bearer ")?.trim().as_bytes();
        self.find(given)
    }
}

/// The one token a caller's token file holds (the format of [`Tokens`]'s
/// files, with exactly one token), for a client to present.
pub fn read_token_file(path: &Path) -> Result<bytes::Bytes, AuthError> {
    let tokens = Tokens::from_file(path)?;
    match tokens.tokens.as_slice() {
        [one] => Ok(bytes::Bytes::copy_from_slice(one)),
        more => Err(AuthError::NotOne {
            path: path.to_owned(),
            count: more.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Result<Tokens, AuthError> {
        Tokens::parse(text, Path::new("tokens.txt"))
    }

    #[test]
    fn a_bearer_token_is_found_by_its_line_and_nothing_else_is() {
        let t = tokens("# callers\nalpha-123\n\n  beta-456  \n").expect("two tokens");
        assert_eq!(t.len(), 2);
        assert_eq!(t.check(Some("Bearer alpha-123")), Some(0));
        assert_eq!(t.check(Some("Bearer beta-456")), Some(1));
        assert_eq!(t.find(b"beta-456"), Some(1));
        assert_eq!(t.check(Some("Bearer alpha-12")), None, "a prefix");
        assert_eq!(t.check(Some("Bearer alpha-1234")), None);
        assert_eq!(t.check(Some("Basic alpha-123")), None);
        assert_eq!(t.check(None), None);
        assert_eq!(t.find(b""), None, "no token is not a token");
        assert!(!format!("{t:?}").contains("alpha"), "never printed");
    }

    #[test]
    fn bad_token_files_name_the_file_and_line() {
        let e = tokens("# nothing\n\n").expect_err("no token");
        assert!(e.to_string().contains("tokens.txt"), "{e}");
        let e = tokens("ok\nhas space\n").expect_err("whitespace");
        assert!(e.to_string().contains("line 2"), "{e}");
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert!(tokens(&long).is_err());
        let e = Tokens::from_file(Path::new("/nonexistent/ebb-tokens")).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/ebb-tokens"), "{e}");
    }

    #[test]
    fn a_callers_token_file_holds_exactly_one_token() {
        let scratch = tempfile::tempdir().expect("temp dir");
        let dir = scratch.path();
        let one = dir.join("one");
        std::fs::write(&one, "# mine\nsecret-1\n").expect("write");
        assert_eq!(
            read_token_file(&one).expect("one token"),
            bytes::Bytes::from_static(b"secret-1")
        );
        let two = dir.join("two");
        std::fs::write(&two, "a\nb\n").expect("write");
        let e = read_token_file(&two).expect_err("two tokens");
        assert!(e.to_string().contains("exactly one"), "{e}");
    }
}
