//! ARCHITECTURE.md is a code map; this keeps it true.
//!
//! The convention (stated at the top of ARCHITECTURE.md): every Rust file
//! under `crates/*/src/` and `examples/*/src/` is named, in backticks, by
//! its path relative to its package's `src/` (`semantics/server.rs`,
//! `lib.rs`), inside its package's section: a heading that names the
//! package's directory in backticks (`crates/ebb-rpc`), up to the next
//! heading of the same or a higher level. And every backticked `*.rs` path
//! in a package's section exists: under the package's `src/`, under the
//! package directory, or from the repository root.
//!
//! So a module added, moved or deleted without its line in the map fails
//! here, naming the file and the line it needs.
//!
//! The layering table is checked too: each package's row lists exactly the
//! ebb packages in its `Cargo.toml`'s `[dependencies]` (what the row puts
//! after "dev:" is not checked), and each of those sits in a lower layer.
//!
//! `map.rs` reads the map and checks module naming, `layers.rs` the
//! layering table; this file walks the repository and runs both on it.

mod layers;
mod map;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use layers::{layering, manifest_deps};
use map::{Package, check};

/// Directories whose subdirectories are packages that the map must cover.
const PACKAGE_PARENTS: [&str; 2] = ["crates", "examples"];

/// Deepest directory nesting walked under a `src/` (a guard against a
/// symlink loop, far above any real module tree).
const MAX_DEPTH: usize = 16;

/// The Rust files under `dir`, relative to it, sorted, with `/` separators.
fn rust_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<String>) {
        assert!(
            depth <= MAX_DEPTH,
            "{} nests deeper than {MAX_DEPTH}",
            dir.display()
        );
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .expect("a directory entry that was just listed")
                .path();
            if path.is_dir() {
                walk(root, &path, depth + 1, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(root)
                    .expect("walked paths lie under the root");
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, 0, &mut out);
    out.sort();
    out
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists: this crate lives in it")
}

/// Every package under `crates/` and `examples/` that has a `src/`.
fn packages(root: &Path) -> Vec<Package> {
    let mut found = Vec::new();
    for parent in PACKAGE_PARENTS {
        let entries =
            fs::read_dir(root.join(parent)).unwrap_or_else(|e| panic!("reading {parent}/: {e}"));
        let mut dirs: Vec<PathBuf> = entries
            .map(|e| e.expect("a directory entry that was just listed").path())
            .filter(|p| p.join("Cargo.toml").is_file() && p.join("src").is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let name = dir
                .file_name()
                .expect("a listed entry has a name")
                .to_string_lossy()
                .into_owned();
            found.push(Package {
                dir: format!("{parent}/{name}"),
                files: rust_files(&dir.join("src")),
            });
        }
    }
    found
}

#[test]
fn architecture_md_names_every_module_and_only_modules_that_exist() {
    let root = repo_root();
    let doc = fs::read_to_string(root.join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md at the repository root");
    let packages = packages(&root);
    let files: usize = packages.iter().map(|p| p.files.len()).sum();
    // The walk itself must have found the workspace, or this check passes vacuously.
    assert!(
        packages.iter().any(|p| p.dir == "crates/ebb-rpc") && files >= 100,
        "walked {} packages and {files} files under {}: the walk did not find the workspace",
        packages.len(),
        root.display()
    );
    let exists = |pkg: &str, path: &str| {
        [
            root.join(pkg).join("src").join(path),
            root.join(pkg).join(path),
            root.join(path),
        ]
        .iter()
        .any(|p| p.is_file())
    };
    let problems = check(&doc, &packages, &exists);
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md is out of date ({} problems over {} packages, {files} files):\n  {}\n\
         The convention is stated at the top of ARCHITECTURE.md.",
        problems.len(),
        packages.len(),
        problems.join("\n  ")
    );
}

#[test]
fn layering_table_matches_every_manifest_and_points_down() {
    let root = repo_root();
    let doc = fs::read_to_string(root.join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md at the repository root");
    let manifests: Vec<(String, String, BTreeSet<String>)> = packages(&root)
        .iter()
        .map(|p| {
            let text = fs::read_to_string(root.join(&p.dir).join("Cargo.toml"))
                .expect("a package has a Cargo.toml");
            let (name, deps) = manifest_deps(&text);
            (p.dir.clone(), name, deps)
        })
        .collect();
    // Non-vacuous: the gateway's manifest was read and has its dependencies.
    assert!(
        manifests
            .iter()
            .any(|(_, n, d)| n == "ebb-gateway" && d.contains("ebb-rpc")),
        "read no dependencies of ebb-gateway from its Cargo.toml: {:?}",
        manifests.iter().map(|m| &m.1).collect::<Vec<_>>()
    );
    let problems = layering(&doc, &manifests);
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md's layering table is out of date:\n  {}",
        problems.join("\n  ")
    );
}
