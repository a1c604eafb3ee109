//! A service's description as it travels: what a node answers a `Describe`
//! with, so a gateway or `ebb call` can call a service it was not built
//! with (method ids, which are idempotent, parameter names for JSON).

use serde::{Deserialize, Serialize};

use super::MethodInfo;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamDescription {
    pub name: String,
    /// The Rust type as written in the trait, for people.
    pub ty: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodDescription {
    pub id: u16,
    pub name: String,
    pub idempotent: bool,
    pub params: Vec<ParamDescription>,
    pub returns: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDescription {
    pub service: String,
    pub methods: Vec<MethodDescription>,
}

impl ServiceDescription {
    /// The description of a method table.
    pub fn of(service: &str, methods: &[MethodInfo]) -> ServiceDescription {
        ServiceDescription {
            service: service.to_owned(),
            methods: methods
                .iter()
                .map(|m| MethodDescription {
                    id: m.id,
                    name: m.name.to_owned(),
                    idempotent: m.idempotent,
                    params: m
                        .params
                        .iter()
                        .map(|p| ParamDescription {
                            name: p.name.to_owned(),
                            ty: p.ty.to_owned(),
                        })
                        .collect(),
                    returns: m.returns.to_owned(),
                })
                .collect(),
        }
    }

    pub fn method(&self, name: &str) -> Option<&MethodDescription> {
        self.methods.iter().find(|m| m.name == name)
    }

    /// The method names, comma-separated, for error messages.
    pub fn method_names(&self) -> String {
        let names: Vec<&str> = self.methods.iter().map(|m| m.name.as_str()).collect();
        names.join(", ")
    }
}

impl MethodDescription {
    /// `Greeter.hello(name: String)`, for error messages and help.
    pub fn signature(&self, service: &str) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| format!("{}: {}", p.name, p.ty))
            .collect();
        format!(
            "{service}.{}({}) -> {}",
            self.name,
            params.join(", "),
            self.returns
        )
    }
}
