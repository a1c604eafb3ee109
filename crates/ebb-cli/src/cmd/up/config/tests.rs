use super::origin::{DEFAULT_EPSILON_MS, DEFAULT_LEASE_TERM_MS, DEFAULT_ORIGIN_LISTEN};
use super::*;
use ebb_core::Nanos;
use ebb_policy::lease::LeaseTerm;

const EXAMPLE: &str = include_str!("../../../../../../examples/ebb-up.toml");

#[test]
fn the_example_config_is_valid() {
    let c = parse(EXAMPLE).expect("the shipped example parses");
    assert_eq!(c.service, ServiceChoice::Builtin("Demo"));
    assert_eq!(c.kind, Kind::Process);
}

#[test]
fn a_bad_value_names_key_value_and_what_is_accepted() {
    let e = parse("[service]\nname = \"demo\"\n[pool]\nkind = \"pod\"\ninitial = 1\nmin = 1\nmax = 2\nboot_timeout_ms = 1\ncost_per_node_second_usd = 0.0\n")
        .expect_err("pod is no node kind");
    assert!(
        e.contains("pool.kind")
            && e.contains("\"pod\"")
            && e.contains("thread, process, container, vm"),
        "{e}"
    );
    let e = parse("[service]\nname = \"demo\"\n[balance]\npolicy = \"fastest\"\n")
        .expect_err("fastest is no policy");
    assert!(e.contains("balance.policy") && e.contains("fastest"), "{e}");
    let e = parse(
        "[gateway]\nrpc = \"localhost\"\nhttp = \"127.0.0.1:0\"\n[service]\nname = \"demo\"\n",
    )
    .expect_err("no port");
    assert!(e.contains("gateway.rpc") && e.contains("IP:PORT"), "{e}");
}

#[test]
fn pool_bounds_are_checked_against_each_other() {
    let cfg = |initial: usize, min: usize, max: usize| {
        format!(
            "[service]\nname = \"demo\"\n[pool]\nkind = \"process\"\ninitial = {initial}\nmin = {min}\nmax = {max}\nboot_timeout_ms = 1000\ncost_per_node_second_usd = 0.0\n"
        )
    };
    assert!(parse(&cfg(2, 1, 3)).is_ok());
    assert!(
        parse(&cfg(4, 1, 3))
            .expect_err("over max")
            .contains("pool.initial")
    );
    assert!(
        parse(&cfg(1, 2, 3))
            .expect_err("under min")
            .contains("pool.initial")
    );
    assert!(
        parse(&cfg(1, 1, 0))
            .expect_err("empty")
            .contains("pool.max")
    );
}

#[test]
fn the_capacity_per_node_is_bounded_and_defaults_to_scale_out_only() {
    let with = |line: &str| {
        parse(&format!(
            "[service]\nname = \"demo\"\n[pool]\nkind = \"process\"\n{line}\n"
        ))
    };
    assert_eq!(
        with("").expect("valid").gateway.pool.max_capacity_per_node,
        1
    );
    assert_eq!(
        with("max_capacity_per_node = 8")
            .expect("valid")
            .gateway
            .pool
            .max_capacity_per_node,
        8
    );
    for bad in ["0", "65"] {
        let e = with(&format!("max_capacity_per_node = {bad}")).expect_err("out of range");
        assert!(
            e.contains("pool.max_capacity_per_node")
                && e.contains(bad)
                && e.contains("1 (scale out only) to 64"),
            "{e}"
        );
    }
}

#[test]
fn node_limits_are_checked_against_the_kind() {
    let with = |pool: &str| parse(&format!("[service]\nname = \"demo\"\n[pool]\n{pool}\n"));
    let c = with("kind = \"container\"\nmemory_mb = 64\ncpus = 0.5").expect("valid limits");
    assert_eq!((c.memory_mb, c.cpus), (Some(64), Some(0.5)));
    let cases: [(&str, &[&str]); 5] = [
        (
            "kind = \"container\"\nmemory_mb = 1",
            &["pool.memory_mb = 1", "at least 4"],
        ),
        (
            "kind = \"vm\"\nmemory_mb = 32",
            &["pool.memory_mb = 32", "at least 64"],
        ),
        (
            "kind = \"container\"\ncpus = 0.0",
            &["pool.cpus = 0.0", "more than 0"],
        ),
        (
            "kind = \"process\"\nmemory_mb = 64",
            &["pool.memory_mb", "only with", "process nodes"],
        ),
        (
            "kind = \"thread\"\ncpus = 1.0",
            &["pool.cpus", "only with", "thread nodes"],
        ),
    ];
    for (pool, wanted) in cases {
        let e = with(pool).expect_err(pool);
        for w in wanted {
            assert!(e.contains(w), "{pool:?}: {e:?} lacks {w:?}");
        }
    }
}

#[test]
fn two_listeners_on_one_address_are_refused_before_start() {
    let with = |gw: &str| parse(&format!("[gateway]\n{gw}\n[service]\nname = \"demo\"\n"));
    let e = with("rpc = \"127.0.0.1:7000\"\nhttp = \"127.0.0.1:7000\"").expect_err("same");
    assert!(
        e.contains("gateway.http") && e.contains("gateway.rpc"),
        "{e}"
    );
    let e = with("http = \"127.0.0.1:8080\"\nadmin = \"127.0.0.1:8080\"").expect_err("same");
    assert!(e.contains("gateway.admin"), "{e}");
    with("rpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"")
        .expect("port 0 picks a different free port each time");
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let e = parse("[pool]\nsize = 3\n").expect_err("size is no key");
    assert!(e.contains("size"), "{e}");
}

#[test]
fn a_node_program_alone_is_served_by_what_it_describes() {
    let c = parse("[service]\ncommand = [\"/opt/greeter-node\"]\n").expect("a command alone");
    assert_eq!(c.service, ServiceChoice::Learned(None));
    assert_eq!(c.runs, Runs::Command(vec!["/opt/greeter-node".into()]));
    let c = parse("[service]\nname = \"Greeter\"\ncommand = [\"/opt/greeter-node\"]\n")
        .expect("a name this build does not know, with its program");
    assert_eq!(c.service, ServiceChoice::Learned(Some("Greeter".into())));
    let e = parse("[service]\nname = \"Greeter\"\n").expect_err("no program to run");
    assert!(
        e.contains("service.name") && e.contains("service.command"),
        "{e}"
    );
    let e = parse("[service]\ncommand = []\n").expect_err("an empty command");
    assert!(e.contains("service.command"), "{e}");
}

#[test]
fn gateway_threads_default_to_the_cores_and_are_bounded() {
    let c = parse("[gateway]\nthreads = 1\n[service]\nname = \"demo\"\n").expect("one thread");
    assert_eq!(c.threads.get(), 1);
    let c = parse("[service]\nname = \"demo\"\n").expect("defaults");
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    assert_eq!(c.threads.get(), cores);
    for bad in ["0", "257"] {
        let e = parse(&format!(
            "[gateway]\nthreads = {bad}\n[service]\nname = \"demo\"\n"
        ))
        .expect_err("out of bounds");
        assert!(
            e.contains("gateway.threads") && e.contains("1 to 256"),
            "{e}"
        );
    }
}

#[test]
fn busy_poll_is_off_by_default_bounded_and_needs_one_thread() {
    let c = parse("[service]\nname = \"demo\"\n").expect("defaults");
    assert_eq!(c.gateway.busy_poll, Nanos::ZERO, "off by default");
    let c = parse("[gateway]\nthreads = 1\nbusy_poll_us = 200\n[service]\nname = \"demo\"\n")
        .expect("one thread, 200 us");
    assert_eq!(c.gateway.busy_poll, Nanos::from_micros(200));
    let c = parse("[gateway]\nthreads = 2\nbusy_poll_us = 0\n[service]\nname = \"demo\"\n")
        .expect("off with any thread count");
    assert_eq!(c.gateway.busy_poll, Nanos::ZERO);
    let e = parse("[gateway]\nthreads = 1\nbusy_poll_us = 1000001\n[service]\nname = \"demo\"\n")
        .expect_err("over a second");
    assert!(
        e.contains("gateway.busy_poll_us = 1000001")
            && e.contains("0 (off, the default) to 1000000"),
        "{e}"
    );
    let e = parse("[gateway]\nthreads = 2\nbusy_poll_us = 50\n[service]\nname = \"demo\"\n")
        .expect_err("two threads");
    assert!(
        e.contains("gateway.busy_poll_us = 50") && e.contains("gateway.threads = 1"),
        "{e}"
    );
    let e =
        parse("[gateway]\nbusy_poll_us = -1\n[service]\nname = \"demo\"\n").expect_err("negative");
    assert!(e.contains("busy_poll_us"), "{e}");
}

#[test]
fn hedge_auth_and_admin_keys_are_checked_by_name() {
    let c = parse("[service]\nname = \"demo\"\n[hedge]\nenabled = true\npercentile = 99.0\n")
        .expect("hedging on");
    assert_eq!(c.gateway.hedge.map(|h| h.percentile), Some(99.0));
    let c = parse("[service]\nname = \"demo\"\n").expect("defaults");
    assert_eq!(c.gateway.hedge, None, "hedging is off by default");
    let e = parse("[service]\nname = \"demo\"\n[hedge]\npercentile = 100.0\n")
        .expect_err("no 100th percentile");
    assert!(e.contains("hedge.percentile") && e.contains("99.9"), "{e}");
    let e = parse("[service]\nname = \"demo\"\n[hedge]\nwindow = 10\nmin_samples = 20\n")
        .expect_err("fewer kept than needed");
    assert!(e.contains("hedge.min_samples"), "{e}");
    let e =
        parse("[gateway]\nadmin = \"nowhere\"\n[service]\nname = \"demo\"\n").expect_err("no port");
    assert!(e.contains("gateway.admin") && e.contains("IP:PORT"), "{e}");
    let e = parse("[service]\nname = \"demo\"\n[auth]\ntoken_file = \"/nonexistent/ebb-tokens\"\n")
        .expect_err("no such file");
    assert!(
        e.contains("auth.token_file") && e.contains("/nonexistent/ebb-tokens"),
        "{e}"
    );
    let e = parse("[service]\nname = \"demo\"\n[admission]\nmax_in_flight_per_caller = 0\n")
        .expect_err("a caller must get something in");
    assert!(e.contains("admission.max_in_flight_per_caller"), "{e}");
    let e = parse("[service]\nname = \"demo\"\n[admission]\nmax_gateway_delay_ms = 0\n")
        .expect_err("no delay at all would refuse everything");
    assert!(
        e.contains("admission.max_gateway_delay_ms") && e.contains("from 1 to"),
        "{e}"
    );
}

#[test]
fn a_user_command_needs_a_process_like_kind() {
    let e = parse("[service]\nname = \"demo\"\ncommand = [\"/bin/node\"]\n[pool]\nkind = \"thread\"\ninitial = 1\nmin = 1\nmax = 2\nboot_timeout_ms = 1000\ncost_per_node_second_usd = 0.0\n")
        .expect_err("thread nodes cannot run a program");
    assert!(e.contains("pool.kind"), "{e}");
}

/// The example's `[origin]` section, uncommented: the keys it documents.
fn example_with_origin() -> String {
    let mut out = String::new();
    let mut in_origin = false;
    for line in EXAMPLE.lines() {
        if line.starts_with("# [origin]") {
            in_origin = true;
        } else if line.starts_with('[') {
            in_origin = false;
        }
        match line.strip_prefix("# ") {
            Some(rest) if in_origin && !rest.starts_with(' ') => out.push_str(rest),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_example_origin_section_is_valid() {
    let text = example_with_origin();
    let c = parse(&text).expect("the example with its origin section parses");
    let o = c.origin.expect("the uncommented section is read");
    assert!(
        matches!(&o.source, OriginSource::Start { data, listen }
            if data.as_os_str() == "ebb-origin-data" && listen == DEFAULT_ORIGIN_LISTEN),
        "{o:?}"
    );
    assert_eq!(o.term, LeaseTerm::from_millis(DEFAULT_LEASE_TERM_MS));
    assert_eq!(o.epsilon_ms, DEFAULT_EPSILON_MS);
    // And with the alternative the example names instead of `data`.
    let existing = text.replace("data = \"ebb-origin-data\"", "addr = \"127.0.0.1:7100\"");
    let existing = existing.replace("listen = \"127.0.0.1:0\"", "");
    let o = parse(&existing).expect("addr instead of data").origin;
    assert_eq!(
        o.map(|o| o.source),
        Some(OriginSource::Existing("127.0.0.1:7100".into()))
    );
    assert!(parse(EXAMPLE).expect("parses").origin.is_none());
}

#[test]
fn origin_errors_name_key_value_and_what_is_accepted() {
    let with = |origin: &str| parse(&format!("[service]\nname = \"demo\"\n[origin]\n{origin}\n"));
    let c =
        with("addr = \"127.0.0.1:7100\"\nlease_term_ms = \"inf\"\nepsilon_ms = 5").expect("valid");
    let o = c.origin.expect("origin");
    assert!(o.term.is_callback());
    assert_eq!(o.epsilon_ms, 5);
    let cases: [(&str, &[&str]); 8] = [
        ("", &["origin", "origin.data", "origin.addr"]),
        (
            "data = \"d\"\naddr = \"127.0.0.1:1\"",
            &["origin", "\"d\"", "one of them"],
        ),
        (
            "addr = \"origin:7100\"",
            &["origin.addr", "\"origin:7100\"", "IP:PORT"],
        ),
        (
            "data = \"d\"\nlease_term_ms = \"forever\"",
            &["origin.lease_term_ms", "forever", "\"inf\""],
        ),
        (
            "data = \"d\"\nlease_term_ms = -1",
            &["origin.lease_term_ms", "-1", "whole milliseconds"],
        ),
        (
            "data = \"d\"\nepsilon_ms = 70000",
            &["origin.epsilon_ms", "70000", "0 to 60000"],
        ),
        (
            "data = \"d\"\nholder_timeout_ms = 0",
            &["origin.holder_timeout_ms", "0", "1 to"],
        ),
        (
            "addr = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:0\"",
            &["origin.listen", "only with origin.data"],
        ),
    ];
    for (section, wanted) in cases {
        let e = with(section).expect_err(section);
        for w in wanted {
            assert!(e.contains(w), "{section:?}: {e:?} lacks {w:?}");
        }
    }
    // VM nodes reach the host's IPv4 loopback through QEMU (10.0.2.2),
    // not IPv6's.
    let vm = |section: &str| {
        parse(&format!(
            "[service]\nname = \"demo\"\n[pool]\nkind = \"vm\"\n[origin]\n{section}\n"
        ))
    };
    vm("addr = \"127.0.0.1:1\"").expect("vm nodes with a running origin");
    vm("data = \"d\"").expect("vm nodes with a started origin");
    for (section, key) in [
        ("addr = \"[::1]:1\"", "origin.addr"),
        ("data = \"d\"\nlisten = \"[::1]:0\"", "origin.listen"),
    ] {
        let e = vm(section).expect_err(section);
        assert!(e.contains(key) && e.contains("IPv4"), "{section:?}: {e}");
    }
    // Container nodes reach only an origin ebb up starts on a host
    // address of its own: data is accepted, addr and listen are not.
    let container = |section: &str| {
        parse(&format!(
            "[service]\nname = \"demo\"\n[pool]\nkind = \"container\"\n[origin]\n{section}\n"
        ))
    };
    let c = container("data = \"d\"").expect("container nodes with a started origin");
    assert!(matches!(
        c.origin.map(|o| o.source),
        Some(OriginSource::Start { .. })
    ));
    for (section, key) in [
        ("addr = \"127.0.0.1:1\"", "origin.addr"),
        ("data = \"d\"\nlisten = \"127.0.0.1:0\"", "origin.listen"),
    ] {
        let e = container(section).expect_err(section);
        assert!(
            e.contains(key) && e.contains("routed to"),
            "{section:?}: {e}"
        );
    }
    let e = parse(
        "[service]\nname = \"demo\"\ncommand = [\"/bin/n\"]\n[origin]\naddr = \"127.0.0.1:1\"\n",
    )
    .expect_err("a user program has its own data");
    assert!(e.contains("service.command"), "{e}");
    let e = with("dir = \"d\"").expect_err("no such key");
    assert!(e.contains("dir") && e.contains("data"), "{e}");
}

#[test]
fn the_boot_timeout_is_read_in_milliseconds_and_bounded() {
    use ebb_node::vm::provider::{DEFAULT_BOOT_TIMEOUT_MS, MAX_BOOT_TIMEOUT_MS};
    let with = |pool: &str| {
        parse(&format!(
            "[service]\nname = \"demo\"\n[pool]\nkind = \"vm\"\n{pool}\n"
        ))
    };
    let c = with("").expect("no boot timeout given");
    assert_eq!(c.gateway.pool.boot_timeout_ms, DEFAULT_BOOT_TIMEOUT_MS);
    let c = with("boot_timeout_ms = 120000").expect("two minutes");
    assert_eq!(c.gateway.pool.boot_timeout_ms, 120_000);
    for value in ["0".to_owned(), (MAX_BOOT_TIMEOUT_MS + 1).to_string()] {
        let e = with(&format!("boot_timeout_ms = {value}"))
            .expect_err("out of range")
            .to_string();
        for part in [
            format!("pool.boot_timeout_ms = {value}"),
            format!("from 1 to {MAX_BOOT_TIMEOUT_MS}"),
            "milliseconds".to_owned(),
        ] {
            assert!(e.contains(&part), "{part:?} missing in: {e}");
        }
    }
    // A value in other units than a number of milliseconds is a type
    // error that shows the key.
    let e = with("boot_timeout_ms = \"60s\"")
        .expect_err("a string")
        .to_string();
    assert!(e.contains("boot_timeout_ms"), "{e}");
}

#[test]
fn the_shutdown_grace_is_read_in_milliseconds_and_bounded() {
    use super::pool::MAX_SHUTDOWN_GRACE_MS;
    let with = |pool: &str| {
        parse(&format!(
            "[service]\nname = \"demo\"\n[pool]\nkind = \"process\"\n{pool}\n"
        ))
    };
    let c = with("").expect("no grace given");
    assert_eq!(c.gateway.pool.shutdown_grace_ms, 10_000);
    let c = with("shutdown_grace_ms = 120000").expect("two minutes");
    assert_eq!(c.gateway.pool.shutdown_grace_ms, 120_000);
    for value in ["0".to_owned(), (MAX_SHUTDOWN_GRACE_MS + 1).to_string()] {
        let e = with(&format!("shutdown_grace_ms = {value}"))
            .expect_err("out of range")
            .to_string();
        for part in [
            format!("pool.shutdown_grace_ms = {value}"),
            format!("from 1 to {MAX_SHUTDOWN_GRACE_MS}"),
        ] {
            assert!(e.contains(&part), "{part:?} missing in: {e}");
        }
    }
}
