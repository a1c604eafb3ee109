//! The layering table: each package's row against its manifest's
//! `[dependencies]`, and every dependency pointing to a lower layer.

use std::collections::BTreeSet;

use super::map::code_spans;

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
pub(crate) fn manifest_deps(manifest: &str) -> (String, BTreeSet<String>) {
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
pub(crate) fn layering(doc: &str, manifests: &[(String, String, BTreeSet<String>)]) -> Vec<String> {
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

// The checker on small inputs, so each way it can fail is shown to fire.

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
