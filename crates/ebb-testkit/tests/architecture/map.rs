//! The module map: markdown sections, the code spans in them, and which
//! package files a package's section fails to name (or names but lack).

use std::collections::BTreeSet;

/// One package: its directory from the repository root (`crates/ebb-rpc`)
/// and its Rust files, relative to its `src/` (`semantics/server.rs`).
pub(crate) struct Package {
    pub(crate) dir: String,
    pub(crate) files: Vec<String>,
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
pub(crate) fn code_spans(text: &str) -> Vec<String> {
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
pub(crate) fn check(
    doc: &str,
    packages: &[Package],
    exists: &dyn Fn(&str, &str) -> bool,
) -> Vec<String> {
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

// The checker on small inputs, so each way it can fail is shown to fire.

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
