//! What a user sees on a mistake, across subcommands: a bad value names
//! the flag, the value and what is accepted (negative numbers and
//! addresses included), and a failure's cause is printed once.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn ebb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap()
}

/// The stderr of a run that must fail with `code`.
fn failure(args: &[&str], code: i32) -> String {
    let o = ebb(args);
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "ebb {args:?}: {e}");
    assert!(!e.contains("backtrace") && !e.contains("panicked"), "{e}");
    e
}

#[test]
fn a_negative_number_reaches_the_flags_own_check() {
    let e = failure(&["load", "--target", "127.0.0.1:1", "--rate", "-5"], 1);
    assert!(e.contains("--rate -5") && e.contains("more than 0"), "{e}");
    for args in [
        &["sim", "--seed", "-1"][..],
        &[
            "chaos",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:1",
            "--delay-ms",
            "-1",
        ],
    ] {
        let e = failure(args, 2);
        assert!(
            !e.contains("unexpected argument") && !e.contains("'-- "),
            "{e}"
        );
        assert!(
            e.contains(&format!("invalid value '{}'", args[args.len() - 1]))
                && e.contains("expected a whole number"),
            "{e}"
        );
    }
    let e = failure(&["demo", "--seconds", "-20"], 2);
    assert!(
        e.contains("-20 is not in 1..=3600"),
        "a ranged flag names its range: {e}"
    );
}

#[test]
fn a_number_flag_given_words_says_it_wants_a_number() {
    let e = failure(&["sim", "lease", "--msg-ms", "soon"], 2);
    assert!(
        e.contains("'soon'") && e.contains("--msg-ms") && e.contains("expected a number"),
        "{e}"
    );
    assert!(!e.contains("invalid float literal"), "{e}");
    let e = failure(&["sim", "--nodes", "ten"], 2);
    assert!(
        e.contains("'ten'") && e.contains("expected a whole number"),
        "{e}"
    );
}

#[test]
fn an_address_without_a_port_is_refused_as_the_flag_s_value() {
    for (args, flag) in [
        (&["node", "--listen", "127.0.0.1"][..], "--listen"),
        (&["call", "--addr", "127.0.0.1", "Demo.echo"], "--addr"),
        (
            &["load", "--target", "localhost", "--rate", "1"],
            "--target",
        ),
        (
            &["chaos", "--listen", "127.0.0.1:0", "--upstream", "x"],
            "--upstream",
        ),
        (
            &["origin", "--listen", ":7100", "--data", "/nonexistent"],
            "--listen",
        ),
    ] {
        let e = failure(args, 2);
        assert!(
            e.contains(flag) && e.contains("HOST:PORT") && e.contains("e.g. 127.0.0.1:7000"),
            "{e}"
        );
    }
    let e = failure(&["call", "--addr", "127.0.0.1:0", "Demo.echo"], 2);
    assert!(e.contains("port `0`") && e.contains("from 1"), "{e}");
}

#[test]
fn a_busy_port_is_named_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let e = failure(&["node", "--listen", &addr], 1);
    assert!(e.contains(&addr), "{e}");
    assert_eq!(
        e.matches("in use").count(),
        1,
        "the cause is printed once: {e}"
    );
    let e = failure(
        &["chaos", "--listen", &addr, "--upstream", "127.0.0.1:1"],
        1,
    );
    assert!(
        e.contains(&format!("--listen {addr}: cannot listen there")),
        "the flag is named: {e}"
    );
    assert_eq!(e.matches("in use").count(), 1, "{e}");
}

#[test]
fn a_table_into_a_closed_pipe_ends_quietly() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::ExitStatusExt;
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills the two-element array it is given.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created by pipe(2) and are owned
    // here alone; the read end is closed at once, as `head` closes it.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    for args in [&["sim", "--requests", "1000"][..], &["info"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .stdout(std::process::Stdio::from(write.try_clone().unwrap()))
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(
            !e.contains("panicked") && !e.contains("backtrace"),
            "ebb {args:?}: {e}"
        );
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "ebb {args:?}: {e}"
        );
    }
}

#[test]
fn a_demo_report_that_cannot_be_written_is_refused_before_the_run() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = file.path().to_str().unwrap();
    let e = failure(&["demo", "--seconds", "3600", "--out", out], 1);
    assert!(
        e.contains(&format!("--out {out}")) && e.contains("cannot write"),
        "{e}"
    );
}

#[test]
fn a_node_program_that_cannot_run_is_refused_by_check_and_by_up() {
    let dir = tempfile::tempdir().unwrap();
    let not_executable = dir.path().join("node.txt");
    std::fs::write(&not_executable, "not a program").unwrap();
    for program in [
        dir.path().join("missing-node").display().to_string(),
        not_executable.display().to_string(),
        "no-such-node-on-path".to_owned(),
    ] {
        let config = dir.path().join("up.toml");
        std::fs::write(
            &config,
            format!("[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n[service]\ncommand = [{program:?}]\n"),
        )
        .unwrap();
        let config = config.to_str().unwrap();
        for args in [&["up", "--check", config][..], &["up", config]] {
            let e = failure(args, 1);
            assert!(
                e.contains("service.command")
                    && e.contains(&format!("`{program}` is not an executable file")),
                "ebb {args:?}: {e}"
            );
        }
    }
}

#[test]
fn ebb_up_on_a_busy_port_names_the_config_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("up.toml");
    std::fs::write(
        &config,
        format!("[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"{addr}\"\n[service]\nname = \"demo\"\n[pool]\nkind = \"thread\"\n"),
    )
    .unwrap();
    let e = failure(&["up", config.to_str().unwrap()], 1);
    assert!(
        e.contains(&format!("gateway.http = \"{addr}\"")) && e.contains("in use"),
        "{e}"
    );
}

#[test]
fn a_reply_into_a_closed_pipe_ends_quietly() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let node = ebb_testkit::Proc::start(
        env!("CARGO_BIN_EXE_ebb"),
        &["node", "--listen", "127.0.0.1:0"],
    );
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills the two-element array it is given.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created by pipe(2) and are owned
    // here alone; the read end is closed at once, as `head` closes it.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["call", "--addr", &node.addr, "Demo.echo", r#"{"msg":"hi"}"#])
        .env("RUST_BACKTRACE", "1")
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
    assert!(out.status.success(), "the call itself succeeded: {e}");
}

#[test]
fn a_demo_trace_that_is_neither_built_in_nor_a_file_says_both() {
    let e = failure(&["demo", "--trace", "/nonexistent/counts.txt"], 1);
    assert!(
        e.contains("--trace `/nonexistent/counts.txt`")
            && e.contains("bursty, step, steady")
            && e.contains("no such file"),
        "{e}"
    );
}

#[test]
fn a_demo_peak_rate_below_the_base_rate_is_refused_naming_both() {
    let e = failure(&["demo", "--peak-rate", "1", "--base-rate", "100"], 1);
    assert!(
        e.contains("--peak-rate 1 is below --base-rate 100")
            && e.contains("--peak-rate of at least 100"),
        "{e}"
    );
    // A trace with no bursts has no peak to be below its base.
    let e = failure(
        &[
            "demo",
            "--trace",
            "steady",
            "--peak-rate",
            "1",
            "--base-rate",
            "100",
            "--out",
            "/proc/none",
        ],
        1,
    );
    assert!(
        e.contains("--out /proc/none"),
        "steady passes the rate check: {e}"
    );
    let e = failure(&["demo", "--base-rate", "inf"], 1);
    assert!(
        e.contains("--base-rate inf") && e.contains("0 or more"),
        "{e}"
    );
}

/// How often `part` occurs in `text`.
fn times(text: &str, part: &str) -> usize {
    text.matches(part).count()
}

#[test]
fn no_context_of_an_error_is_said_twice() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("counts.txt");
    std::fs::write(&bad, "1\nabc\n").unwrap();
    let bad = bad.to_str().unwrap();
    let trace_arg = format!("trace:{bad},counts");
    for args in [
        &["demo", "--trace", bad, "--seconds", "1"][..],
        &[
            "load",
            "--target",
            "127.0.0.1:1",
            "--trace",
            bad,
            "--duration",
            "1",
        ],
        &["sim", "--arrivals", &trace_arg],
    ] {
        let e = failure(args, 1);
        assert!(
            times(&e, "trace") == 1 + usize::from(args[0] == "demo") && times(&e, bad) == 1,
            "ebb {args:?}: {e}"
        );
        assert!(e.contains("line 2: `abc`"), "{e}");
    }
    let data = dir.path().join("file-not-dir");
    std::fs::write(&data, "").unwrap();
    let data = data.join("data");
    let data = data.to_str().unwrap();
    let e = failure(&["origin", "--listen", "127.0.0.1:0", "--data", data], 1);
    assert!(
        times(&e, data) == 1
            && e.contains("--data")
            && e.contains("cannot create the data directory"),
        "{e}"
    );
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = unused.local_addr().unwrap().to_string();
    drop(unused);
    let e = failure(&["call", "--addr", &addr, "Demo.incr", r#"{"key":"a"}"#], 1);
    assert!(
        times(&e, "did not run") == 1 && times(&e, "sent") == 1,
        "whether it ran, once: {e}"
    );
    let e = failure(&["demo", "--balance", "bogus"], 2);
    assert!(
        e.contains("'--balance <BALANCE>'") && times(&e, "balancing policy") == 1,
        "checked as the flag is parsed: {e}"
    );
    let e = failure(&["demo", "--policy", "bogus"], 2);
    assert!(e.contains("'--policy <POLICY>'"), "{e}");
}

#[test]
fn a_vm_sandbox_names_each_flag_it_cannot_apply_before_booting() {
    let run = |flags: &[&str]| {
        let mut args = vec!["sandbox", "run", "--kind", "vm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "true"]);
        failure(&args, 1)
    };
    for (flags, named) in [
        (&["--hostname", "x"][..], "--hostname"),
        (&["--net", "none"], "--net"),
        (&["--reach", "10.0.0.1"], "--reach"),
        (&["--pids", "3"], "--pids 3"),
    ] {
        let e = run(flags);
        assert!(
            e.contains(named) && e.contains("--kind container only") && e.contains("--file"),
            "{e}"
        );
    }
    let e = run(&["--memory-mb", "10"]);
    assert!(
        e.contains("--memory-mb 10") && e.contains("64 or more"),
        "{e}"
    );
    let e = run(&["--cpus", "100"]);
    assert!(e.contains("--cpus 100") && e.contains("at most 64"), "{e}");
    let e = run(&["--file", "/nonexistent/t:/etc/t"]);
    assert!(
        e.contains("--file /nonexistent/t:/etc/t") && e.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn a_simulation_setting_out_of_range_is_named_by_its_flag() {
    let e = failure(&["sim", "--load", "0", "--requests", "10"], 1);
    assert!(
        e.contains("--load 0: accepted: a number greater than 0"),
        "{e}"
    );
    let e = failure(&["sim", "--nodes", "0", "--requests", "10"], 1);
    assert!(e.contains("--nodes 0: accepted: 1 to 1048576"), "{e}");
}

#[test]
fn a_boot_timeout_is_refused_out_of_range_and_for_a_container() {
    let e = failure(
        &[
            "sandbox",
            "run",
            "--kind",
            "vm",
            "--boot-timeout-ms",
            "0",
            "--",
            "true",
        ],
        2,
    );
    assert!(e.contains("--boot-timeout-ms") && e.contains("0"), "{e}");
    let e = failure(&["vm", "boot", "--boot-timeout-ms", "3600001"], 2);
    assert!(
        e.contains("--boot-timeout-ms") && e.contains("3600001"),
        "{e}"
    );
    let e = failure(
        &["sandbox", "run", "--boot-timeout-ms", "90000", "--", "true"],
        1,
    );
    assert!(
        e.contains("--boot-timeout-ms 90000") && e.contains("--kind vm only"),
        "{e}"
    );
}

/// `ebb demo` takes the same flag with the same range, and refuses it for
/// a kind that does not boot, before anything starts (no VM is needed).
#[test]
fn a_demo_boot_timeout_is_refused_out_of_range_and_for_other_kinds() {
    let e = failure(&["demo", "--kind", "vm", "--boot-timeout-ms", "0"], 2);
    assert!(e.contains("--boot-timeout-ms") && e.contains("0"), "{e}");
    let e = failure(&["demo", "--kind", "vm", "--boot-timeout-ms", "3600001"], 2);
    assert!(
        e.contains("--boot-timeout-ms") && e.contains("3600001"),
        "{e}"
    );
    let e = failure(
        &["demo", "--kind", "thread", "--boot-timeout-ms", "90000"],
        1,
    );
    assert!(
        e.contains("--boot-timeout-ms 90000") && e.contains("--kind vm only"),
        "{e}"
    );
}

#[test]
fn a_config_value_of_the_wrong_type_says_what_to_write_in_toml() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("up.toml");
    for (section, line, said) in [
        ("pool", "initial = -1", "expected a whole number, 0 or more"),
        (
            "pool",
            "max = \"three\"",
            "expected a whole number, 0 or more",
        ),
        (
            "outlier",
            "consecutive_failures = 99999999999",
            "expected a whole number from 0 to 4294967295",
        ),
        ("retry", "budget_ratio = \"a lot\"", "expected a number"),
        ("admission", "enabled = \"yes\"", "expected true or false"),
        ("service", "command = \"greeter-node\"", "expected a list"),
    ] {
        let text = format!("[service]\nname = \"demo\"\n[{section}]\n{line}\n")
            .replace("[service]\nname = \"demo\"\n[service]\n", "[service]\n");
        std::fs::write(&config, &text).unwrap();
        let e = failure(&["up", "--check", config.to_str().unwrap()], 1);
        assert!(
            e.contains(line) && e.contains(said),
            "{text}: the line and what to write: {e}"
        );
        assert!(
            ["usize", "u64", "u32", "f64", "a boolean", "sequence"]
                .iter()
                .all(|rust| !e.contains(rust)),
            "no Rust type names: {e}"
        );
    }
}

#[test]
fn up_check_names_the_node_program_it_would_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("up.toml");
    std::fs::write(
        &config,
        "[service]\nname = \"demo\"\ncommand = [\"sh\", \"-c\", \"exit 1\"]\n",
    )
    .unwrap();
    let o = ebb(&["up", "--check", config.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(r#"service Demo run by ["sh", "-c", "exit 1"] on process nodes"#),
        "{out}"
    );
}

#[test]
fn call_arguments_that_are_not_json_say_where_they_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("args.json");
    std::fs::write(&file, "{key: a}").unwrap();
    let at = format!("@{}", file.display());
    // The node is never reached: the arguments are checked first.
    let e = failure(&["call", "--addr", "127.0.0.1:1", "Demo.incr", &at], 1);
    assert!(
        e.contains(&format!(
            "read from {:?} (given as @FILE)",
            file.display().to_string()
        )) && e.contains("not valid JSON"),
        "{e}"
    );
    // Over one frame: refused by size before any connection, not as a
    // wrong argument.
    let huge = format!("{{\"msg\":\"{}\"}}", "x".repeat(17 << 20));
    std::fs::write(&file, &huge).unwrap();
    let e = failure(&["call", "--addr", "127.0.0.1:1", "Demo.echo", &at], 1);
    assert!(
        e.contains(&format!("{} bytes as JSON, over the", huge.len()))
            && e.contains("one call carries; nothing was sent")
            && !e.contains("connection"),
        "{e}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["call", "--addr", "127.0.0.1:1", "Demo.incr", "-"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains(r#"arguments "" read from standard input (given as -) are not valid JSON"#),
        "{e}"
    );
}

#[test]
fn a_sandbox_limit_out_of_range_names_its_bounds() {
    fn run<'a>(flags: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["sandbox", "run"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "true"]);
        args
    }
    let e = failure(&run(&["--pids", "0"]), 2);
    assert!(e.contains("1..=4194304"), "{e}");
    let e = failure(&run(&["--pids", "18446744073709551615"]), 2);
    assert!(e.contains("1..=4194304"), "{e}");
    let e = failure(&run(&["--memory-mb", "0"]), 2);
    assert!(e.contains("4..=16777216"), "{e}");
    for cpus in ["0", "1e300", "NaN"] {
        let e = failure(&run(&["--cpus", cpus]), 1);
        assert!(
            e.contains("more than 0 and at most 1024") && !e.contains("cgroup"),
            "--cpus {cpus}: {e}"
        );
    }
}

#[test]
fn a_vm_run_refuses_a_zero_timeout_and_a_missing_binary_before_booting() {
    let e = failure(&["vm", "run", "--timeout-ms", "0", "--", "true"], 2);
    assert!(
        e.contains("--timeout-ms") && e.contains("1..=86400000"),
        "{e}"
    );
    let e = failure(
        &["vm", "run", "--include", "/nonexistent/jq", "--", "true"],
        1,
    );
    assert!(
        e.contains("--include /nonexistent/jq: not a file") && !e.contains("initramfs"),
        "{e}"
    );
}

#[test]
fn a_config_bound_the_gateway_cannot_use_is_refused_naming_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("up.toml");
    for (section, line, said) in [
        (
            "admission",
            "max_held_bytes = 0",
            "a positive number of bytes",
        ),
        (
            "pool",
            "cost_per_node_second_usd = 1e300",
            "a price in dollars from 0 to 1000000",
        ),
    ] {
        let text = format!("[service]\nname = \"demo\"\n[{section}]\n{line}\n");
        std::fs::write(&config, &text).unwrap();
        let e = failure(&["up", "--check", config.to_str().unwrap()], 1);
        let key = format!("{section}.{}", line.split(' ').next().unwrap());
        assert!(e.contains(&key) && e.contains(said), "{text}: {e}");
    }
}

#[test]
fn an_origin_that_cannot_listen_does_not_count_as_a_run() {
    use std::io::BufRead;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let e = failure(&["origin", "--listen", &addr, "--data", data], 1);
    assert!(
        e.contains(&format!("--listen {addr}: cannot listen there")) && !e.contains("incarnation"),
        "{e}"
    );
    // The first start that listens is the store's first run: no leases of
    // a previous run to wait out.
    let mut origin = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["origin", "--listen", "127.0.0.1:0", "--data", data])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(origin.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = origin.kill();
    let _ = origin.wait();
    assert_eq!(first.trim(), "origin: incarnation 1");
}

#[test]
fn a_tls_file_that_cannot_be_used_is_named_with_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    let signed = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = dir.path().join("node.pem");
    let key = dir.path().join("node.key");
    std::fs::write(&cert, signed.cert.pem()).unwrap();
    std::fs::write(&key, signed.key_pair.serialize_pem()).unwrap();
    let missing = dir.path().join("missing.pem");
    let [cert, key, missing] = [&cert, &key, &missing].map(|p| p.to_str().unwrap());
    for (files, flag) in [
        (&["--tls-cert", missing, "--tls-key", key][..], "--tls-cert"),
        (&["--tls-cert", cert, "--tls-key", missing], "--tls-key"),
        (
            &[
                "--tls-cert",
                cert,
                "--tls-key",
                key,
                "--tls-client-ca",
                missing,
            ],
            "--tls-client-ca",
        ),
    ] {
        // Served by `ebb::node` alone, and beside HTTP.
        for http in [&[][..], &["--http", "127.0.0.1:0"]] {
            let args = [&["node", "--listen", "127.0.0.1:0"][..], files, http].concat();
            let e = failure(&args, 1);
            assert!(
                e.contains(&format!("{flag}: cannot read")) && times(&e, missing) == 1,
                "ebb {args:?}: {e}"
            );
        }
    }
}
