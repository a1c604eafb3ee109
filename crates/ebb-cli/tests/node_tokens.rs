//! `ebb node --token-file` with `ebb call --token-file`: a node that
//! requires a bearer token serves only callers presenting one it lists,
//! tells the others so without running their call (nor describing its
//! methods to them), and names a bad token file before it listens.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn ebb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(args)
        .output()
        .expect("the ebb binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_node_with_a_token_file_serves_only_callers_presenting_a_listed_token() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# callers of this node\nalpha-1\nbeta-2\n").expect("write");
    let mine = dir.path().join("mine");
    std::fs::write(&mine, "beta-2\n").expect("write");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "gamma-3\n").expect("write");
    let node = common::ebb(&[
        "node",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        s(&tokens),
    ]);
    let incr = |token: Option<&Path>| {
        let mut args = vec!["call", "--addr", &node.addr, "--timeout-ms", "10000"];
        if let Some(t) = token {
            args.extend(["--token-file", s(t)]);
        }
        args.extend(["Demo.incr", r#"{"key":"a"}"#]);
        ebb(&args)
    };

    let served = incr(Some(&mine));
    assert!(served.status.success(), "{served:?}");
    assert_eq!(stdout(&served), r#"{"Ok":1}"#);

    // Refused at the handshake: the Describe that `ebb call` starts with is
    // not answered, and the refusal says what to do.
    let without = incr(None);
    assert!(!without.status.success(), "{without:?}");
    let e = stderr(&without);
    assert!(e.contains("pass --token-file FILE"), "{e}");
    assert!(e.contains("it did not run"), "{e}");
    let forged = incr(Some(&wrong));
    assert!(!forged.status.success(), "{forged:?}");
    let e = stderr(&forged);
    assert!(e.contains("does not accept the token"), "{e}");

    // Neither refused call ran: the counter moves from 1 to 2.
    let again = incr(Some(&mine));
    assert_eq!(stdout(&again), r#"{"Ok":2}"#, "{again:?}");
}

#[test]
fn a_missing_or_empty_token_file_is_named_before_the_node_listens() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("no-such-tokens");
    let empty = dir.path().join("empty-tokens");
    std::fs::write(&empty, "# nobody yet\n\n").expect("write");
    for (file, why) in [(&missing, "cannot read"), (&empty, "holds no token")] {
        let out = ebb(&["node", "--listen", "127.0.0.1:0", "--token-file", s(file)]);
        assert!(!out.status.success(), "{out:?}");
        assert!(!stdout(&out).contains("listening on"), "{out:?}");
        let e = stderr(&out);
        assert!(
            e.contains("--token-file") && e.contains(s(file)) && e.contains(why),
            "{e}"
        );
    }
    // A directory is not readable as a token file either.
    let out = ebb(&[
        "node",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        s(dir.path()),
    ]);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr(&out).contains(s(dir.path())), "{out:?}");
}
