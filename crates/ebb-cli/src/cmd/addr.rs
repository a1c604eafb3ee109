//! Address flags checked when they are parsed, so that a missing port or a
//! port out of range is reported as what the flag accepts instead of as a
//! connection or bind failure ("invalid socket address", "is `ebb node`
//! running there?").

/// `HOST:PORT` to listen on (`--listen`, `--http`); port 0 picks a free port.
pub fn listen(s: &str) -> Result<String, String> {
    host_port(s, 0).map_err(|why| {
        format!("{why}; expected HOST:PORT, e.g. 127.0.0.1:7000 (port 0 picks a free port)")
    })
}

/// `HOST:PORT` to connect to (`--addr`, `--target`, `--upstream`,
/// `--origin`): a port from 1.
pub fn connect(s: &str) -> Result<String, String> {
    host_port(s, 1)
        .map_err(|why| format!("{why}; expected HOST:PORT with a port from 1, e.g. 127.0.0.1:7000"))
}

/// Checks the shape only: a host (a name, an IPv4 address or a bracketed
/// IPv6 one) and a port from `min_port` to 65535. Whether the name resolves
/// is learned when it is used.
fn host_port(s: &str, min_port: u16) -> Result<String, String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("no port".into());
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("an IPv6 host goes in brackets, as in [::1]:7000".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p >= min_port => Ok(s.to_owned()),
        _ => Err(format!(
            "port `{port}` is not a whole number from {min_port} to 65535"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{connect, listen};

    #[test]
    fn host_and_port_pass_through_unchanged() {
        for ok in [
            "127.0.0.1:7000",
            "localhost:1",
            "[::1]:7000",
            "node-3.local:65535",
        ] {
            assert_eq!(connect(ok).as_deref(), Ok(ok));
        }
        assert_eq!(listen("127.0.0.1:0").as_deref(), Ok("127.0.0.1:0"));
    }

    #[test]
    fn a_bad_address_says_what_is_missing_and_what_is_accepted() {
        let e = listen("127.0.0.1").unwrap_err();
        assert!(e.starts_with("no port") && e.contains("HOST:PORT"), "{e}");
        let e = connect(":7000").unwrap_err();
        assert!(e.starts_with("no host"), "{e}");
        let e = connect("127.0.0.1:99999").unwrap_err();
        assert!(e.contains("`99999`") && e.contains("1 to 65535"), "{e}");
        let e = connect("127.0.0.1:0").unwrap_err();
        assert!(e.contains("from 1"), "{e}");
        let e = connect("::1:7000").unwrap_err();
        assert!(e.contains("[::1]:7000"), "{e}");
    }
}
