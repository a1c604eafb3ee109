//! The origin's durable key-value store: redb, one file, per-key versions.
//!
//! A write is acknowledged only after its transaction committed with
//! `Durability::Immediate` (fsync), so after `kill -9` every acknowledged
//! write is there with its version. Each record carries a checksum of key,
//! version and value, so a damaged file is reported, never served: redb's
//! own checks catch a torn or corrupted page when the file is opened or a
//! page is read; the record checksum catches what slips past them.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};

use crate::{MAX_KEY_BYTES, MAX_VALUE_BYTES};

const VALUES: TableDefinition<&str, &[u8]> = TableDefinition::new("values");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The data file's name inside the data directory.
pub const DATA_FILE: &str = "origin.redb";

/// Version (8 bytes) and checksum (8 bytes) before the value.
const HEADER_BYTES: usize = 16;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key is {len} bytes; at most {max} are accepted")]
    KeyTooLong { len: usize, max: usize },
    #[error("value is {len} bytes; at most {max} are accepted")]
    ValueTooLarge { len: usize, max: usize },
    #[error("version mismatch: expected {expected}, the key is at {current}")]
    VersionMismatch { expected: u64, current: u64 },
    #[error(
        "data file {path} is damaged ({detail}); restore it from a copy or move it away to start empty"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "data file {path} is already open elsewhere (is another `ebb origin` serving this data directory?); stop that one or give another directory"
    )]
    InUse { path: PathBuf },
    #[error("data file {path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("cannot create the data directory {dir}: {detail}")]
    CreateDir { dir: PathBuf, detail: String },
}

/// A stored value and its version (≥ 1: version 0 means "never written").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub version: u64,
    pub value: Vec<u8>,
}

/// One write of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub key: String,
    pub value: Vec<u8>,
    /// Apply only if the key is at this version (0: never written).
    pub expected: Option<u64>,
}

#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

/// FNV-1a over key, version and value: cheap, and enough to tell a damaged
/// record from a good one (this is no defence against an adversary).
fn checksum(key: &str, version: u64, value: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key
        .as_bytes()
        .iter()
        .chain(version.to_le_bytes().iter())
        .chain(value.iter())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn encode(key: &str, version: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + value.len());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&checksum(key, version, value).to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Checks limits a caller can be told about before anything is stored.
pub fn check_sizes(key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::KeyTooLong {
            len: key.len(),
            max: MAX_KEY_BYTES,
        });
    }
    if let Some(v) = value {
        if v.len() > MAX_VALUE_BYTES {
            return Err(StoreError::ValueTooLarge {
                len: v.len(),
                max: MAX_VALUE_BYTES,
            });
        }
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(DATA_FILE);
        std::fs::create_dir_all(dir).map_err(|e| StoreError::CreateDir {
            dir: dir.to_path_buf(),
            detail: e.to_string(),
        })?;
        // redb asserts (panics) on some torn files instead of returning an
        // error; either way the file is damaged and is reported as such.
        let opened =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Database::create(&path)));
        let db = match opened {
            Ok(r) => r.map_err(|e| classify(&path, e))?,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the storage engine gave up on it".to_owned());
                return Err(StoreError::Corrupt { path, detail: why });
            }
        };
        let store = Store { db, path };
        // Create the tables so readers never meet a missing one.
        let tx = store.write_tx()?;
        {
            tx.open_table(VALUES).map_err(|e| store.err(e))?;
            tx.open_table(META).map_err(|e| store.err(e))?;
        }
        tx.commit().map_err(|e| store.err(e))?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        classify(&self.path, e)
    }

    fn write_tx(&self) -> Result<redb::WriteTransaction, StoreError> {
        self.db.begin_write().map_err(|e| self.err(e))
    }

    /// The record under `key`, if it was ever written.
    pub fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        check_sizes(key, None)?;
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(VALUES).map_err(|e| self.err(e))?;
        let Some(raw) = table.get(key).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        self.decode(key, raw.value()).map(Some)
    }

    fn decode(&self, key: &str, raw: &[u8]) -> Result<Record, StoreError> {
        let corrupt = |detail: &str| StoreError::Corrupt {
            path: self.path.clone(),
            detail: format!("record of key {key:?}: {detail}"),
        };
        if raw.len() < HEADER_BYTES {
            return Err(corrupt("shorter than its header"));
        }
        let (head, value) = raw.split_at(HEADER_BYTES);
        let (v, sum) = head.split_at(8);
        let version = u64::from_le_bytes(v.try_into().map_err(|_| corrupt("bad header"))?);
        let sum = u64::from_le_bytes(sum.try_into().map_err(|_| corrupt("bad header"))?);
        if sum != checksum(key, version, value) || version == 0 {
            return Err(corrupt("checksum mismatch"));
        }
        Ok(Record {
            version,
            value: value.to_vec(),
        })
    }

    /// Stores `value` as the key's next version (only if the key is at
    /// `expected`, when given) in a durable transaction of its own.
    pub fn put(&self, key: &str, value: &[u8], expected: Option<u64>) -> Result<u64, StoreError> {
        let write = Write {
            key: key.to_owned(),
            value: value.to_vec(),
            expected,
        };
        let mut results = self.put_batch(std::slice::from_ref(&write))?;
        results
            .pop()
            .expect("put_batch answers every write it is given")
    }

    /// Applies `writes` in order in one durable transaction (group commit:
    /// one fsync for all of them). A write refused on its own (size, version)
    /// gets its error and the others go ahead; a failure of the transaction
    /// itself fails them all (`Err`), and then none was applied.
    pub fn put_batch(&self, writes: &[Write]) -> Result<Vec<Result<u64, StoreError>>, StoreError> {
        let tx = self.write_tx()?;
        let mut results = Vec::with_capacity(writes.len());
        {
            let mut table = tx.open_table(VALUES).map_err(|e| self.err(e))?;
            for w in writes {
                if let Err(e) = check_sizes(&w.key, Some(&w.value)) {
                    results.push(Err(e));
                    continue;
                }
                // Reads inside the transaction see the batch's earlier writes.
                let current = match table.get(w.key.as_str()).map_err(|e| self.err(e))? {
                    Some(raw) => self.decode(&w.key, raw.value())?.version,
                    None => 0,
                };
                if let Some(expected) = w.expected {
                    if expected != current {
                        results.push(Err(StoreError::VersionMismatch { expected, current }));
                        continue;
                    }
                }
                let version = current + 1;
                table
                    .insert(w.key.as_str(), encode(&w.key, version, &w.value).as_slice())
                    .map_err(|e| self.err(e))?;
                results.push(Ok(version));
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        debug_assert_eq!(results.len(), writes.len());
        Ok(results)
    }

    /// A number kept beside the data (the lease term bound, the incarnation).
    pub fn meta(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(META).map_err(|e| self.err(e))?;
        Ok(table.get(name).map_err(|e| self.err(e))?.map(|v| v.value()))
    }

    /// Sets `name` durably.
    pub fn set_meta(&self, name: &str, value: u64) -> Result<(), StoreError> {
        let tx = self.write_tx()?;
        {
            let mut table = tx.open_table(META).map_err(|e| self.err(e))?;
            table.insert(name, value).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Every key and its version, in key order: for checks and tools.
    pub fn versions(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(VALUES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let key = k.value().to_owned();
            let rec = self.decode(&key, v.value())?;
            out.push((key, rec.version));
        }
        Ok(out)
    }
}

/// Sorts redb's failures into damage (the file cannot be trusted) and the
/// rest (permissions, a full disk, a second process holding the file).
fn classify(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    if matches!(e, redb::Error::DatabaseAlreadyOpen) {
        return StoreError::InUse {
            path: path.to_path_buf(),
        };
    }
    let damaged = match &e {
        redb::Error::Corrupted(_) => true,
        redb::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
        ),
        _ => false,
    };
    let detail = e.to_string();
    if damaged {
        StoreError::Corrupt {
            path: path.to_path_buf(),
            detail,
        }
    } else {
        StoreError::Io {
            path: path.to_path_buf(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests;
