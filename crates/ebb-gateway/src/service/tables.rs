//! The method tables the gateway builds for itself, leaked once for its
//! lifetime because the ingress traits hand out `&'static` tables: one
//! from a node's description, or a typed table copied with `blocking`
//! cleared (the gateway only forwards; nothing blocks here).

use std::sync::{Mutex, PoisonError};

use ebb_rpc::service::{MethodInfo, ParamInfo, ServiceDescription};

/// A method table built from a node's description.
///
/// The ingress traits hand out `&'static` tables, so a description is
/// leaked once per gateway when the first node describes itself: a few
/// kilobytes at most (bounded by `MAX_METHODS` and `MAX_PARAMS`).
#[derive(Debug)]
pub struct Described {
    pub name: &'static str,
    pub methods: &'static [MethodInfo],
    pub description: ServiceDescription,
}

/// Typed method tables copied with `blocking` cleared, at most: a build
/// serves a handful of services; past it a table is run as it is.
pub const MAX_NON_BLOCKING_COPIES: usize = 16;

/// `methods` with `blocking` cleared: one copy per table, leaked for the
/// process's lifetime (a few hundred bytes each).
pub(super) fn non_blocking(methods: &'static [MethodInfo]) -> &'static [MethodInfo] {
    type Copies = Vec<(usize, &'static [MethodInfo])>;
    static COPIES: Mutex<Copies> = Mutex::new(Vec::new());
    if !methods.iter().any(|m| m.blocking) {
        return methods;
    }
    let key = methods.as_ptr() as usize;
    // A lookup or a push: the list is consistent at any panic point.
    let mut copies = COPIES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, copy)) = copies.iter().find(|(k, _)| *k == key) {
        return copy;
    }
    if copies.len() >= MAX_NON_BLOCKING_COPIES {
        return methods;
    }
    let copy: Vec<MethodInfo> = methods
        .iter()
        .map(|m| MethodInfo {
            blocking: false,
            ..*m
        })
        .collect();
    let copy: &'static [MethodInfo] = Box::leak(copy.into_boxed_slice());
    copies.push((key, copy));
    copy
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

impl Described {
    /// The method table of `d`, leaked for the gateway's lifetime. Ids must
    /// be `0..n` in order, as every ebb service's are; anything else is
    /// refused with what was wrong.
    pub fn leak(d: ServiceDescription) -> Result<&'static Described, String> {
        if d.methods.len() > ebb_rpc::service::MAX_METHODS {
            return Err(format!(
                "{} describes {} methods; at most {} are accepted",
                d.service,
                d.methods.len(),
                ebb_rpc::service::MAX_METHODS
            ));
        }
        for (i, m) in d.methods.iter().enumerate() {
            if usize::from(m.id) != i {
                return Err(format!(
                    "{}.{} has id {} at position {i}; ids must count from 0 in order",
                    d.service, m.name, m.id
                ));
            }
            if m.params.len() > ebb_rpc::service::MAX_PARAMS {
                return Err(format!(
                    "{}.{} has {} parameters; at most {} are accepted",
                    d.service,
                    m.name,
                    m.params.len(),
                    ebb_rpc::service::MAX_PARAMS
                ));
            }
        }
        let service = leak(&d.service);
        let methods: Vec<MethodInfo> = d
            .methods
            .iter()
            .map(|m| {
                let params: Vec<ParamInfo> = m
                    .params
                    .iter()
                    .map(|p| ParamInfo {
                        name: leak(&p.name),
                        ty: leak(&p.ty),
                    })
                    .collect();
                MethodInfo {
                    service,
                    id: m.id,
                    name: leak(&m.name),
                    idempotent: m.idempotent,
                    // The gateway only forwards: nothing blocks here.
                    blocking: false,
                    params: Box::leak(params.into_boxed_slice()),
                    returns: leak(&m.returns),
                }
            })
            .collect();
        Ok(Box::leak(Box::new(Described {
            name: service,
            methods: Box::leak(methods.into_boxed_slice()),
            description: d,
        })))
    }
}
