//! Which tokio runtime a client or server runs on: the current-thread
//! runtime (everything on the calling thread) or the multi-thread runtime
//! with N workers. Both ends of a run use the same flavour, and every table
//! says which.

use std::fmt;
use std::str::FromStr;

use anyhow::Context;

/// Most workers a multi-thread flavour may ask for.
const MAX_WORKERS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavour {
    /// `new_current_thread`: tasks run on the thread that blocks on the runtime.
    Current,
    /// `new_multi_thread` with this many workers; the benchmark's own task is
    /// spawned onto a worker, so all work runs on the workers.
    Multi(usize),
}

impl Flavour {
    pub fn runtime(self) -> anyhow::Result<tokio::runtime::Runtime> {
        match self {
            Flavour::Current => tokio::runtime::Builder::new_current_thread(),
            Flavour::Multi(n) => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(n);
                b
            }
        }
        .enable_all()
        .build()
        .context("building the tokio runtime")
    }

    /// Threads doing the work: what decides whether one core is enough.
    pub fn threads(self) -> usize {
        match self {
            Flavour::Current => 1,
            Flavour::Multi(n) => n,
        }
    }

    /// The command-line spelling, which `FromStr` reads back.
    pub fn arg(self) -> String {
        match self {
            Flavour::Current => "current".into(),
            Flavour::Multi(n) => format!("multi{n}"),
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flavour::Current => write!(f, "current-thread"),
            Flavour::Multi(1) => write!(f, "multi-thread, 1 worker"),
            Flavour::Multi(n) => write!(f, "multi-thread, {n} workers"),
        }
    }
}

impl FromStr for Flavour {
    type Err = String;

    fn from_str(s: &str) -> Result<Flavour, String> {
        let bad = || {
            format!(
                "{s:?} is not a runtime flavour; give \"current\" (current-thread) or \"multiN\" \
                 (multi-thread with N workers, 1..={MAX_WORKERS}), e.g. multi1"
            )
        };
        if s == "current" {
            return Ok(Flavour::Current);
        }
        let n: usize = s
            .strip_prefix("multi")
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?;
        if n == 0 || n > MAX_WORKERS {
            return Err(bad());
        }
        Ok(Flavour::Multi(n))
    }
}

#[cfg(test)]
mod tests {
    use super::Flavour;

    #[test]
    fn flavours_parse_and_print_back() {
        for f in [Flavour::Current, Flavour::Multi(1), Flavour::Multi(4)] {
            assert_eq!(f.arg().parse::<Flavour>(), Ok(f));
        }
        assert!("multi0".parse::<Flavour>().is_err());
        assert!("threads".parse::<Flavour>().is_err());
    }
}
