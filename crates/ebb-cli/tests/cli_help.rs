//! `--help` teaches: every command, down to the leaves, ends with an
//! example of itself, and `ebb --help` says where to start.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn help(path: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(path)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "ebb {path:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists under `Commands:`, `help` left out.
fn subcommands(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_command_shows_an_example_of_itself() {
    let top = help(&[]);
    assert!(
        top.contains("Start here:") && top.contains("ebb demo"),
        "{top}"
    );
    let mut pending: Vec<Vec<String>> = subcommands(&top).into_iter().map(|c| vec![c]).collect();
    let mut leaves = 0;
    while let Some(path) = pending.pop() {
        let text = help(&path);
        let subs = subcommands(&text);
        if !subs.is_empty() {
            pending.extend(subs.into_iter().map(|s| [path.clone(), vec![s]].concat()));
            continue;
        }
        leaves += 1;
        let example = format!("ebb {}", path.join(" "));
        assert!(
            text.lines().any(|l| {
                let l = l.trim_start();
                l.strip_prefix("sudo ").unwrap_or(l).starts_with(&example)
            }),
            "`{example} --help` shows no example of `{example}`:\n{text}"
        );
    }
    assert!(leaves >= 18, "walked {leaves} commands");
}

#[test]
fn up_check_says_what_would_run_in_the_config_s_own_words() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/ebb-up.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["up", "--check", example])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("on process nodes (initial 3, min 1, max 16)")
            && text.contains("balance p2c")
            && text.contains("autoscale none"),
        "the kind and policies as the config spells them: {text}"
    );
}

#[test]
fn help_asked_of_help_is_help_and_an_unknown_command_lists_the_known_ones() {
    for args in [
        &["help", "--help"][..],
        &["help", "-h"],
        &["vm", "help", "boot", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Usage: ebb"),
            "ebb {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (args, listed) in [
        (&["help", "nope"][..], "accepted: demo, info, chaos"),
        (&["nope"], "accepted: demo, info, chaos"),
        (&["vm", "nope"], "accepted: probe, fetch-kernel, run, boot"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "ebb {args:?}: {err}");
        assert!(
            err.contains("unrecognized subcommand 'nope'") && err.contains(listed),
            "ebb {args:?}: {err}"
        );
    }
}

/// Bare `ebb` is what a newcomer types first: it prints the same help as
/// `ebb --help` (where to start, the demo and the tests) and succeeds, as
/// `cargo` does, rather than failing with a usage error.
#[test]
fn bare_ebb_prints_the_help_and_succeeds() {
    let out = Command::new(env!("CARGO_BIN_EXE_ebb")).output().unwrap();
    assert!(out.status.success(), "bare ebb exited {}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, help(&[]), "bare ebb and ebb --help differ");
    for line in ["ebb demo", "cargo test --workspace", "Commands:"] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
