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

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Directories whose subdirectories are packages that the map must cover.
const PACKAGE_PARENTS: [&str; 2] = ["crates", "examples"];

/// Deepest directory nesting walked under a `src/` (a guard against a
/// symlink loop, far above any real module tree).
const MAX_DEPTH: usize = 16;

/// One package: its directory from the repository root (`crates/ebb-rpc`)
/// and its Rust files, relative to its `src/` (`semantics/server.rs`).
struct Package {
    dir: String,
    files: Vec<String>,
}

/// One heading of the map and the text under it, up to the next heading of
/// the same or a higher level.
struct Section {
    heading: String,
    body: String,
}

/// Splits markdown into sections. Lines inside fenced code blocks are never
/// headings.
fn sections(doc: &str) -> Vec<Section> {
    let mut heads: Vec<(usize, usize)> = Vec::new(); // (line index, level)
    let lines: Vec<&str> = doc.lines().collect();
    let mut in_fence = false;
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let level = line.chars().take_while(|&c| c == '#').count();
        if level > 0 && line[level..].starts_with(' ') {
            heads.push((i, level));
        }
    }
    heads
        .iter()
        .enumerate()
        .map(|(k, &(start, level))| {
            let end = heads[k + 1..]
                .iter()
                .find(|&&(_, l)| l <= level)
                .map_or(lines.len(), |&(i, _)| i);
            Section {
                heading: lines[start].to_string(),
                body: lines[start + 1..end].join("\n"),
            }
        })
        .collect()
}

/// The contents of markdown code spans: a run of N backticks up to the
/// next run of exactly N, trimmed (so `` `a` `` gives `a`).
fn code_spans(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let run_at = |i: usize| b[i..].iter().take_while(|&&c| c == b'`').count();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'`' {
            i += 1;
            continue;
        }
        let n = run_at(i);
        let start = i + n;
        let mut j = start;
        let mut close = None;
        while j < b.len() {
            if b[j] == b'`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                spans.push(text[start..j].trim().to_string());
                i = j + n;
            }
            // An unmatched run is literal text.
            None => i = start,
        }
    }
    spans
}

/// The `*.rs` paths named in a text: code spans that are one word ending
/// in `.rs`.
fn rs_paths(text: &str) -> BTreeSet<String> {
    code_spans(text)
        .into_iter()
        .filter(|s| s.ends_with(".rs") && !s.contains(char::is_whitespace))
        .collect()
}

/// Every problem with the map, as lines naming the file and what to do.
/// `exists(package_dir, path)` says whether a named path exists for that
/// package (under its `src/`, its directory, or the repository root).
fn check(doc: &str, packages: &[Package], exists: &dyn Fn(&str, &str) -> bool) -> Vec<String> {
    let sections = sections(doc);
    let mut problems = Vec::new();
    for pkg in packages {
        let tag = format!("`{}`", pkg.dir);
        let mine: Vec<&Section> = sections
            .iter()
            .filter(|s| s.heading.contains(&tag))
            .collect();
        if mine.is_empty() {
            problems.push(format!(
                "{}: no section; add a heading naming {tag} and a line for each of its modules",
                pkg.dir
            ));
            continue;
        }
        let named: BTreeSet<String> = mine.iter().flat_map(|s| rs_paths(&s.body)).collect();
        for file in &pkg.files {
            if !named.contains(file) {
                problems.push(format!(
                    "{}/src/{file}: not on the map; name it as `{file}` in the section of {tag}, \
                     saying what it owns",
                    pkg.dir
                ));
            }
        }
        for path in &named {
            if !exists(&pkg.dir, path) {
                problems.push(format!(
                    "{tag} section names `{path}`, which does not exist under {0}/src/, {0}/ \
                     or the repository root; update or remove that line",
                    pkg.dir
                ));
            }
        }
    }
    problems
}

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

/// One row of the layering table: `| layer | `name` ... | `dep`, ... (dev: ...) | ... |`.
struct Row {
    layer: u32,
    name: String,
    deps: BTreeSet<String>,
}

/// The rows of the layering table: table lines whose first cell is a number.
fn layer_rows(doc: &str) -> Vec<Row> {
    doc.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.strip_prefix('|')?.split('|').map(str::trim).collect();
            let layer = cells.first()?.parse().ok()?;
            let name = code_spans(cells.get(1)?).into_iter().next()?;
            let normal = cells.get(2)?.split("(dev").next().unwrap_or_default();
            Some(Row {
                layer,
                name,
                deps: code_spans(normal).into_iter().collect(),
            })
        })
        .collect()
}

/// The package name and its ebb dependencies, from the `[dependencies]`
/// section of a `Cargo.toml` (dev- and build-dependencies are not layering).
fn manifest_deps(manifest: &str) -> (String, BTreeSet<String>) {
    let mut section = "";
    let mut name = String::new();
    let mut deps = BTreeSet::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let key = line.split(['=', '.', ' ']).next().unwrap_or_default();
        if section == "[package]" && key == "name" {
            name = line.split('"').nth(1).unwrap_or_default().to_string();
        } else if section == "[dependencies]" && (key == "ebb" || key.starts_with("ebb-")) {
            deps.insert(key.to_string());
        }
    }
    (name, deps)
}

/// Every way the layering table disagrees with the manifests or breaks its
/// own rule. `manifests` holds (package directory, name, ebb dependencies).
fn layering(doc: &str, manifests: &[(String, String, BTreeSet<String>)]) -> Vec<String> {
    let rows = layer_rows(doc);
    let layer_of = |name: &str| rows.iter().find(|r| r.name == name).map(|r| r.layer);
    let mut problems = Vec::new();
    for (dir, name, deps) in manifests {
        let Some(row) = rows.iter().find(|r| &r.name == name) else {
            problems.push(format!(
                "{dir}: package `{name}` has no row in the layering table"
            ));
            continue;
        };
        for missing in deps.difference(&row.deps) {
            problems.push(format!(
                "{dir}/Cargo.toml depends on `{missing}`, which the layering row of `{name}` does not list"
            ));
        }
        for extra in row.deps.difference(deps) {
            problems.push(format!(
                "the layering row of `{name}` lists `{extra}`, which {dir}/Cargo.toml's [dependencies] does not have"
            ));
        }
        for dep in deps {
            match layer_of(dep) {
                Some(l) if l < row.layer => {}
                Some(l) => problems.push(format!(
                    "`{name}` (layer {}) depends on `{dep}` (layer {l}): dependencies must point to a lower layer",
                    row.layer
                )),
                None => problems.push(format!("`{name}` depends on `{dep}`, which has no row in the layering table")),
            }
        }
    }
    problems
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

// The checkers on small inputs, so each way they can fail is shown to fire.

#[test]
fn layering_reports_an_unlisted_dependency_an_upward_one_and_a_stale_one() {
    let doc = "| layer | crates | ebb dependencies |\n|---|---|---|\n\
               | 0 | `ebb-core` | none |\n\
               | 1 | `ebb-rpc` | `ebb-core`, `ebb-sim` (dev: `ebb-chaos`) |\n\
               | 1 | `ebb-sim` | `ebb-core` |\n";
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let manifests = vec![
        (
            "crates/ebb-core".to_string(),
            "ebb-core".to_string(),
            set(&[]),
        ),
        (
            "crates/ebb-rpc".to_string(),
            "ebb-rpc".to_string(),
            set(&["ebb-core", "ebb-policy"]),
        ),
        (
            "crates/ebb-sim".to_string(),
            "ebb-sim".to_string(),
            set(&["ebb-core", "ebb-rpc"]),
        ),
    ];
    let problems = layering(doc, &manifests);
    let expect = [
        "crates/ebb-rpc/Cargo.toml depends on `ebb-policy`, which the layering row of `ebb-rpc` does not list",
        "the layering row of `ebb-rpc` lists `ebb-sim`, which crates/ebb-rpc/Cargo.toml's [dependencies] does not have",
        "`ebb-rpc` depends on `ebb-policy`, which has no row in the layering table",
        "crates/ebb-sim/Cargo.toml depends on `ebb-rpc`, which the layering row of `ebb-sim` does not list",
        "`ebb-sim` (layer 1) depends on `ebb-rpc` (layer 1): dependencies must point to a lower layer",
    ];
    assert_eq!(problems, expect);
}

#[test]
fn manifest_deps_reads_only_normal_ebb_dependencies() {
    let manifest = "[package]\nname = \"ebb-x\"\n[dependencies]\nebb-core.workspace = true\n\
                    ebb = { path = \"../ebb\" }\nserde.workspace = true\n[dev-dependencies]\nebb-testkit.workspace = true\n";
    let (name, deps) = manifest_deps(manifest);
    assert_eq!(name, "ebb-x");
    assert_eq!(deps.into_iter().collect::<Vec<_>>(), ["ebb", "ebb-core"]);
}

fn pkg(dir: &str, files: &[&str]) -> Package {
    Package {
        dir: dir.into(),
        files: files.iter().map(|f| f.to_string()).collect(),
    }
}

fn exists_in(known: &'static [&'static str]) -> impl Fn(&str, &str) -> bool {
    move |pkg: &str, path: &str| {
        known.contains(&format!("{pkg}/src/{path}").as_str()) || known.contains(&path)
    }
}

#[test]
fn a_module_missing_from_its_section_is_named() {
    let doc = "## Crates\n### `crates/a`\n- `lib.rs`: the root.\n";
    let problems = check(
        doc,
        &[pkg("crates/a", &["lib.rs", "wire/codec.rs"])],
        &exists_in(&["crates/a/src/lib.rs"]),
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("crates/a/src/wire/codec.rs: not on the map"),
        "{problems:?}"
    );
}

#[test]
fn a_mention_in_another_packages_section_does_not_count() {
    let doc = "### `crates/a`\n- `lib.rs`\n### `crates/b`\n- `lib.rs`, `extra.rs`\n";
    let known = &[
        "crates/a/src/lib.rs",
        "crates/b/src/lib.rs",
        "crates/b/src/extra.rs",
    ];
    let problems = check(
        doc,
        &[
            pkg("crates/a", &["lib.rs", "extra.rs"]),
            pkg("crates/b", &["lib.rs", "extra.rs"]),
        ],
        &exists_in(known),
    );
    assert_eq!(problems, vec!["crates/a/src/extra.rs: not on the map; name it as `extra.rs` in the section of `crates/a`, saying what it owns".to_string()]);
}

#[test]
fn a_subsection_belongs_to_its_package_until_a_heading_of_the_same_level() {
    // `inner.rs` sits under a level-4 heading inside a's section; `late.rs`
    // comes after the next level-3 heading, which belongs to no package.
    let doc =
        "### `crates/a`\n- `lib.rs`\n#### details\n- `inner.rs`\n### Elsewhere\n- `late.rs`\n";
    let known = &[
        "crates/a/src/lib.rs",
        "crates/a/src/inner.rs",
        "crates/a/src/late.rs",
    ];
    let problems = check(
        doc,
        &[pkg("crates/a", &["inner.rs", "late.rs", "lib.rs"])],
        &exists_in(known),
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("crates/a/src/late.rs"),
        "{problems:?}"
    );
}

#[test]
fn a_named_path_that_does_not_exist_is_stale() {
    let doc = "### `crates/a`\n- `lib.rs`, `gone.rs`, `tests/kept.rs`\n";
    let known = &["crates/a/src/lib.rs", "tests/kept.rs"];
    let problems = check(doc, &[pkg("crates/a", &["lib.rs"])], &exists_in(known));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("names `gone.rs`, which does not exist"),
        "{problems:?}"
    );
}

#[test]
fn a_package_without_a_section_is_named() {
    let problems = check(
        "### `crates/a`\n- `lib.rs`\n",
        &[pkg("crates/b", &["lib.rs"])],
        &exists_in(&[]),
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("crates/b: no section"),
        "{problems:?}"
    );
}

#[test]
fn code_spans_handle_double_backticks_line_breaks_and_fences() {
    assert_eq!(
        code_spans("a `x.rs` and `` `y` `` and `ebb\n  sandbox`"),
        ["x.rs", "`y`", "ebb\n  sandbox"]
    );
    assert_eq!(code_spans("unmatched ` tick `z.rs`"), ["tick"]);
    let s = sections("### `crates/a`\n```\n# not a heading\n```\n- `lib.rs`\n## next\n");
    assert_eq!(s.len(), 2);
    assert!(s[0].body.contains("`lib.rs`"));
}
