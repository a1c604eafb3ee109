//! What `ebb up --check` prints: the configuration as it would run, so a
//! user sees the defaults that filled the keys they left out before
//! anything starts.

use std::path::Path;

use super::config::{Checked, Kind, OriginSource, Runs};
use super::node_files;

pub(super) fn print(config: &Path, checked: &Checked) {
    // The program matters as much as the service: name it.
    let program = match &checked.runs {
        Runs::Builtin => String::new(),
        Runs::Command(cmd) => format!(" run by {cmd:?}"),
    };
    println!(
        "{}: ok: service {}{program} on {} nodes (initial {}, min {}, max {}), balance {}, autoscale {}, rpc {}, http {}",
        config.display(),
        checked.service,
        format!("{:?}", checked.kind).to_lowercase(),
        checked.gateway.pool.initial,
        checked.gateway.pool.min,
        checked.gateway.pool.max,
        checked.gateway.balance,
        checked.autoscale.as_deref().unwrap_or("none"),
        checked.gateway.rpc_addr,
        checked.gateway.http_addr,
    );
    let most = checked.gateway.pool.max_capacity_per_node;
    if most > 1 {
        println!(
            "nodes scale up in place to at most {most} blocking calls at once each (pool.max_capacity_per_node)"
        );
    }
    if let Some(t) = &checked.node_tokens {
        let copied = match checked.kind {
            Kind::Thread | Kind::Process => String::new(),
            Kind::Container | Kind::Vm => format!(
                ", copied into each node as {}",
                node_files::inside(node_files::TOKEN_NAME).display()
            ),
        };
        println!(
            "nodes require the token in {} (the gateway presents it){copied}",
            t.path.display()
        );
    }
    if let Some(t) = &checked.node_tls {
        println!(
            "nodes serve TLS with {}{}; the gateway checks their certificates against {}{}",
            t.cert.display(),
            match checked.kind {
                Kind::Thread | Kind::Process => String::new(),
                Kind::Container | Kind::Vm =>
                    format!(" (copied into each node under {})", node_files::INSIDE_DIR),
            },
            t.server_name
                .as_deref()
                .map_or_else(|| "the address it dials".to_owned(), |n| format!("{n:?}")),
            match &t.client_ca {
                Some(ca) => format!(
                    "; mutual: nodes serve only certificates from {}",
                    ca.display()
                ),
                None => String::new(),
            }
        );
    }
    if let Some(o) = &checked.origin {
        println!(
            "origin: {}, lease term {}, epsilon {} ms",
            match &o.source {
                OriginSource::Start { data, listen } =>
                    format!("started on {} listening on {listen}", data.display()),
                OriginSource::Existing(a) => format!("running at {a}"),
            },
            if o.term.is_callback() {
                "inf (callbacks)".to_owned()
            } else {
                format!("{} ms", o.term.span().as_millis())
            },
            o.epsilon_ms
        );
    }
    let busy = checked.gateway.busy_poll;
    if busy > ebb_core::Nanos::ZERO {
        println!(
            "the gateway busy-polls: its thread polls instead of sleeping until no request came or went for {} us (a core kept busy meanwhile)",
            busy.as_micros()
        );
    }
}
