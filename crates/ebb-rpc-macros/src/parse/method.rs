//! One method of the trait: receiver, parameters, return type, attributes.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{
    Attribute, FnArg, Ident, Meta, Pat, ReturnType, Signature, TraitItemFn, Type, parse_quote,
};

use super::{Errors, Method, Param, generics_span};

/// The most parameters one method may take; mirrors
/// `ebb_rpc::service::MAX_PARAMS` (serde's largest tuple).
pub const MAX_PARAMS: usize = 16;

/// Names the generated client already uses for its own methods.
const CLIENT_RESERVED: &[&str] = &["new", "with_options", "options", "transport"];

pub(super) fn parse_method(f: TraitItemFn, service: &Ident, errors: &mut Errors) -> Option<Method> {
    let TraitItemFn {
        attrs,
        sig,
        default,
        ..
    } = f;
    let (attrs, idempotent) = take_flag(attrs, "idempotent", errors);
    let (attrs, blocking) = take_flag(attrs, "blocking", errors);
    check_signature(&sig, errors);
    let params = parse_params(&sig, errors);

    let name = sig.ident.unraw().to_string();
    if CLIENT_RESERVED.contains(&name.as_str()) {
        errors.push(
            &sig.ident,
            format!("method name `{name}` clashes with the generated `{service}Client::{name}`; rename the method"),
        );
    }
    let output = match &sig.output {
        ReturnType::Default => parse_quote!(()),
        ReturnType::Type(_, ty) => {
            check_owned(ty, "the return type", errors);
            (**ty).clone()
        }
    };
    Some(Method {
        attrs,
        ident: sig.ident,
        idempotent,
        blocking,
        params: params?,
        output,
        default,
    })
}

/// Removes the marker `#[flag]` (`idempotent`, `blocking`) from the
/// attributes; rejects arguments, repeats and `#[cfg]` (a method that may
/// vanish would shift the ids after it).
fn take_flag(attrs: Vec<Attribute>, flag: &str, errors: &mut Errors) -> (Vec<Attribute>, bool) {
    let mut set = false;
    let mut kept = Vec::new();
    for attr in attrs {
        if attr.path().is_ident(flag) {
            if !matches!(attr.meta, Meta::Path(_)) {
                errors.push(&attr.meta, format!("`#[{flag}]` takes no arguments"));
            } else if set {
                errors.push(&attr.meta, format!("`#[{flag}]` is given more than once"));
            }
            set = true;
        } else if attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr") {
            errors.push(
                &attr.meta,
                "`#[cfg]` is not allowed on a service method: method ids are positions in the trait and must not depend on build flags",
            );
        } else {
            kept.push(attr);
        }
    }
    (kept, set)
}

fn check_signature(sig: &Signature, errors: &mut Errors) {
    let name = &sig.ident;
    if sig.asyncness.is_none() {
        errors.push(
            sig.fn_token,
            format!("service method `{name}` must be `async fn {name}(&self, ..)`"),
        );
    }
    if let Some(c) = &sig.constness {
        errors.push(c, "a service method cannot be `const`");
    }
    if let Some(u) = &sig.unsafety {
        errors.push(u, "a service method cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.push(abi, "a service method cannot have an ABI");
    }
    if let Some(v) = &sig.variadic {
        errors.push(v, "a service method cannot be variadic");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(
            generics_span(&sig.generics),
            format!("service method `{name}` cannot be generic: the server must know the concrete argument types to decode them"),
        );
    }
    let receiver_ok = match sig.inputs.first() {
        Some(FnArg::Receiver(r)) => {
            let is_ref = r.reference.as_ref().is_some_and(|(_, lt)| lt.is_none());
            if r.mutability.is_some() && is_ref {
                errors.push(
                    r,
                    format!("service method `{name}` takes `&self`, not `&mut self`: calls run concurrently, so keep mutable state behind a Mutex or atomics"),
                );
            } else if !is_ref || r.colon_token.is_some() {
                errors.push(r, format!("service method `{name}` must take `&self`"));
            }
            true
        }
        _ => false,
    };
    if !receiver_ok {
        errors.push(
            &sig.ident,
            format!("service method `{name}` must take `&self` as its first parameter"),
        );
    }
}

fn parse_params(sig: &Signature, errors: &mut Errors) -> Option<Vec<Param>> {
    let mut params = Vec::new();
    let mut ok = true;
    for arg in &sig.inputs {
        let FnArg::Typed(pt) = arg else { continue };
        match &*pt.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.mutability.is_none() && p.subpat.is_none() => {
                check_owned(&pt.ty, &format!("parameter `{}`", p.ident), errors);
                params.push(Param {
                    ident: p.ident.clone(),
                    ty: (*pt.ty).clone(),
                });
            }
            other => {
                ok = false;
                errors.push(
                    other,
                    "a service parameter must be a plain name (it is the parameter's key in JSON arguments); destructure it inside the method",
                );
            }
        }
    }
    if params.len() > MAX_PARAMS {
        errors.push(
            &sig.ident,
            format!(
                "service method `{}` takes {} parameters; at most {MAX_PARAMS} are allowed (group them in a struct)",
                sig.ident,
                params.len()
            ),
        );
    }
    ok.then_some(params)
}

/// Arguments and replies are decoded from bytes, so they must own their data.
fn check_owned(ty: &Type, what: &str, errors: &mut Errors) {
    match ty {
        Type::Reference(_) => errors.push(
            ty,
            format!("{what} must be an owned type (it is decoded from the wire): use `String` for `&str`, `Vec<T>` for `&[T]`"),
        ),
        Type::ImplTrait(_) => errors.push(
            ty,
            format!("{what} cannot be `impl Trait`: it must be a concrete type that can be encoded"),
        ),
        _ => {}
    }
    if mentions_self(ty.to_token_stream()) {
        errors.push(
            ty,
            format!("{what} cannot mention `Self`: clients and the JSON codec do not know the implementing type"),
        );
    }
}

fn mentions_self(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|t| match t {
        proc_macro2::TokenTree::Ident(i) => i == "Self",
        proc_macro2::TokenTree::Group(g) => mentions_self(g.stream()),
        _ => false,
    })
}
