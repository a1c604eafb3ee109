//! Who may call the HTTP ingress, and how much each caller may have in
//! flight at once.
//!
//! - [`Tokens`]: bearer tokens from a file, compared in constant time (the
//!   comparison does not stop at the first differing byte, and every token
//!   is compared), so response timing does not reveal a token's prefix.
//! - [`CallerBounds`]: requests in flight per caller (a token, or the peer
//!   address without authentication), so one caller cannot take the whole
//!   ingress or the held queue; the table of callers is bounded too.
//!
//! Mechanism only: the HTTP layer decides where these apply.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use subtle::ConstantTimeEq;

/// Tokens a file may hold at most.
pub const MAX_TOKENS: usize = 1_024;
/// The longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 512;
/// Callers tracked at once; a new caller past it is refused until one ends
/// its requests.
pub const MAX_TRACKED_CALLERS: usize = 65_536;

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
}

/// The bearer tokens the ingress accepts.
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

    /// The index of the token an `Authorization` header value carries
    /// (`Bearer TOKEN`), or `None`. Every token is compared, whatever
    /// matched.
    pub fn check(&self, authorization: Option<&str>) -> Option<usize> {
        let given = authorization?.strip_prefix("Bearer ")?.trim().as_bytes();
        let mut found = None;
        for (i, t) in self.tokens.iter().enumerate() {
            if bool::from(t.as_slice().ct_eq(given)) {
                found = Some(i);
            }
        }
        found
    }
}

/// Why a caller's request was not let in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallerRefusal {
    #[error("caller {caller} already has {limit} requests in flight, its bound")]
    AtBound { caller: String, limit: usize },
    #[error("{MAX_TRACKED_CALLERS} callers have requests in flight; no room for another")]
    TooManyCallers,
}

#[derive(Debug)]
struct Table {
    max_per_caller: usize,
    in_flight: HashMap<String, usize>,
}

/// Requests in flight per caller.
#[derive(Clone, Debug)]
pub struct CallerBounds {
    table: Arc<Mutex<Table>>,
}

/// A caller's place; dropping it ends the request.
#[derive(Debug)]
pub struct CallerSlot {
    table: Arc<Mutex<Table>>,
    caller: String,
}

fn lock(t: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // Every critical section leaves the table consistent.
    t.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CallerBounds {
    pub fn new(max_per_caller: usize) -> CallerBounds {
        CallerBounds {
            table: Arc::new(Mutex::new(Table {
                max_per_caller,
                in_flight: HashMap::new(),
            })),
        }
    }

    pub fn max_per_caller(&self) -> usize {
        lock(&self.table).max_per_caller
    }

    /// Lets one more request of `caller` in, or says why not.
    pub fn enter(&self, caller: &str) -> Result<CallerSlot, CallerRefusal> {
        let mut t = lock(&self.table);
        let limit = t.max_per_caller;
        let tracked = t.in_flight.len();
        match t.in_flight.get_mut(caller) {
            Some(n) if *n >= limit => {
                return Err(CallerRefusal::AtBound {
                    caller: caller.to_owned(),
                    limit,
                });
            }
            Some(n) => *n += 1,
            None if tracked >= MAX_TRACKED_CALLERS => return Err(CallerRefusal::TooManyCallers),
            None if limit == 0 => {
                return Err(CallerRefusal::AtBound {
                    caller: caller.to_owned(),
                    limit,
                });
            }
            None => {
                t.in_flight.insert(caller.to_owned(), 1);
            }
        }
        debug_assert!(t.in_flight.len() <= MAX_TRACKED_CALLERS);
        Ok(CallerSlot {
            table: Arc::clone(&self.table),
            caller: caller.to_owned(),
        })
    }

    /// Requests `caller` has in flight.
    pub fn in_flight(&self, caller: &str) -> usize {
        lock(&self.table)
            .in_flight
            .get(caller)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        let mut t = lock(&self.table);
        if let Some(n) = t.in_flight.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                t.in_flight.remove(&self.caller);
            }
        }
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
        assert_eq!(t.check(Some("Bearer alpha-12")), None, "a prefix");
        assert_eq!(t.check(Some("Bearer alpha-1234")), None);
        assert_eq!(t.check(Some("Basic alpha-123")), None);
        assert_eq!(t.check(None), None);
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
    fn each_caller_is_bounded_on_its_own_and_slots_give_back() {
        let b = CallerBounds::new(2);
        let a1 = b.enter("a").expect("first");
        let a2 = b.enter("a").expect("second");
        let e = b.enter("a").expect_err("third is over the bound");
        assert_eq!(
            e,
            CallerRefusal::AtBound {
                caller: "a".into(),
                limit: 2
            }
        );
        let other = b.enter("b").expect("another caller is not affected");
        drop(a1);
        let a3 = b.enter("a").expect("room again");
        drop((a2, a3, other));
        assert_eq!((b.in_flight("a"), b.in_flight("b")), (0, 0));
        assert!(
            lock(&b.table).in_flight.is_empty(),
            "idle callers forgotten"
        );
    }
}
