//! From the annotated trait to a small, checked model of the service.
//!
//! Every check records its error and goes on, so one compile shows every
//! mistake in the trait at once instead of one per attempt.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Block, Expr, FnArg, Ident, ItemTrait, Lit, Meta, Pat, Path, ReturnType, Signature,
    Token, TraitItem, TraitItemFn, Type, TypeParamBound, Visibility, parse_quote,
};

/// The most methods one service may declare; mirrors
/// `ebb_rpc::service::MAX_METHODS` (ids are `u16`, the table stays small).
pub const MAX_METHODS: usize = 1024;

/// The most parameters one method may take; mirrors
/// `ebb_rpc::service::MAX_PARAMS` (serde's largest tuple).
pub const MAX_PARAMS: usize = 16;

/// Names the generated client already uses for its own methods.
const CLIENT_RESERVED: &[&str] = &["new", "with_options", "options", "transport"];

pub struct Service {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    pub supertraits: Punctuated<TypeParamBound, Token![+]>,
    pub methods: Vec<Method>,
    /// Path to the `ebb_rpc` crate as seen from the user's crate.
    pub krate: Path,
}

pub struct Method {
    /// Attributes passed through to the trait method (`#[idempotent]` removed).
    pub attrs: Vec<Attribute>,
    pub ident: Ident,
    pub idempotent: bool,
    pub params: Vec<Param>,
    /// `()` when the method declares no return type.
    pub output: Type,
    pub default: Option<Block>,
}

pub struct Param {
    pub ident: Ident,
    pub ty: Type,
}

/// Collects errors so that all of them are reported together.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, span: impl Spanned, msg: impl std::fmt::Display) {
        self.push_error(syn::Error::new(span.span(), msg));
    }

    fn push_error(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    /// Only called after at least one push.
    fn into_error(self) -> syn::Error {
        self.0.unwrap_or_else(|| {
            syn::Error::new(proc_macro2::Span::call_site(), "invalid service trait")
        })
    }

    fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }
}

impl Service {
    pub fn parse(attr: TokenStream, item: TokenStream) -> syn::Result<Service> {
        let mut errors = Errors::default();
        let krate = parse_args(attr, &mut errors);
        let item_tokens = item.clone();
        let item: ItemTrait = match syn::parse2(item) {
            Ok(item) => item,
            Err(e) => {
                // Another kind of item gets one plain message; a trait with a
                // syntax error keeps the parser's own.
                match syn::parse2::<syn::Item>(item_tokens) {
                    Ok(other) if !matches!(other, syn::Item::Trait(_)) => errors.push(
                        first_token(&other),
                        "#[service] goes on a trait (`pub trait Name { async fn .. }`)",
                    ),
                    _ => errors.push_error(e),
                }
                return Err(errors.into_error());
            }
        };
        check_trait_header(&item, &mut errors);

        let mut methods = Vec::new();
        for trait_item in item.items {
            match trait_item {
                TraitItem::Fn(f) => {
                    if let Some(m) = parse_method(f, &item.ident, &mut errors) {
                        methods.push(m);
                    }
                }
                other => errors.push(
                    &other,
                    "a service trait holds only `async fn` methods; associated types, consts and macros cannot cross the wire",
                ),
            }
        }
        for (i, m) in methods.iter().enumerate() {
            if methods[..i].iter().any(|f| f.ident == m.ident) {
                errors.push(
                    &m.ident,
                    format!(
                        "duplicate method `{}`: method names must be unique (they name the method in JSON and on the command line)",
                        m.ident
                    ),
                );
            }
        }
        if methods.len() > MAX_METHODS {
            errors.push(
                &item.ident,
                format!(
                    "service `{}` declares {} methods; at most {MAX_METHODS} are allowed (method ids are u16 and the table is bounded)",
                    item.ident,
                    methods.len()
                ),
            );
        }
        errors.finish(Service {
            attrs: item.attrs,
            vis: item.vis,
            ident: item.ident,
            supertraits: item.supertraits,
            methods,
            krate,
        })
    }
}

/// The span of an item's first token (joined spans are not available on
/// stable, so a message on a whole item would point at its start anyway).
fn first_token(item: &syn::Item) -> proc_macro2::Span {
    quote::ToTokens::to_token_stream(item)
        .into_iter()
        .next()
        .map_or_else(proc_macro2::Span::call_site, |t| t.span())
}

/// `#[service]` or `#[service(crate = path)]` (also `crate = "path"`).
fn parse_args(attr: TokenStream, errors: &mut Errors) -> Path {
    let default: Path = parse_quote!(::ebb::rpc);
    if attr.is_empty() {
        return default;
    }
    let parser = Punctuated::<Meta, Token![,]>::parse_terminated;
    let metas = match syn::parse::Parser::parse2(parser, attr) {
        Ok(metas) => metas,
        Err(e) => {
            errors.push(
                e.span(),
                format!("cannot parse #[service] arguments ({e}); the only accepted argument is `crate = path::to::ebb_rpc`"),
            );
            return default;
        }
    };
    let mut krate = None;
    for meta in metas {
        match &meta {
            Meta::NameValue(nv) if nv.path.is_ident("crate") => {
                let path = match &nv.value {
                    Expr::Path(p) => Some(p.path.clone()),
                    Expr::Lit(l) => match &l.lit {
                        Lit::Str(s) => s.parse::<Path>().ok(),
                        _ => None,
                    },
                    _ => None,
                };
                match path {
                    Some(_) if krate.is_some() => {
                        errors.push(&meta, "`crate` is given more than once");
                    }
                    Some(p) => krate = Some(p),
                    None => errors.push(
                        &nv.value,
                        "`crate` takes a path to the ebb_rpc crate, like `crate = ::ebb_rpc` or `crate = \"::ebb::rpc\"`",
                    ),
                }
            }
            _ => errors.push(
                &meta,
                "unknown #[service] argument; the only accepted argument is `crate = path::to::ebb_rpc` (default `::ebb::rpc`)",
            ),
        }
    }
    krate.unwrap_or(default)
}

/// Where a generics error should point: the parameters, or the `where`
/// clause when there are none (empty generics have no span of their own).
fn generics_span(generics: &syn::Generics) -> proc_macro2::Span {
    match &generics.where_clause {
        Some(w) if generics.params.is_empty() => w.span(),
        _ => generics.span(),
    }
}

fn check_trait_header(item: &ItemTrait, errors: &mut Errors) {
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.push(
            generics_span(&item.generics),
            "a service trait cannot be generic: clients and servers must agree on concrete types",
        );
    }
    if let Some(u) = &item.unsafety {
        errors.push(u, "a service trait cannot be `unsafe`");
    }
    if let Some(a) = &item.auto_token {
        errors.push(a, "a service trait cannot be an auto trait");
    }
}

fn parse_method(f: TraitItemFn, service: &Ident, errors: &mut Errors) -> Option<Method> {
    let TraitItemFn {
        attrs,
        sig,
        default,
        ..
    } = f;
    let (attrs, idempotent) = take_idempotent(attrs, errors);
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
        params: params?,
        output,
        default,
    })
}

/// Removes `#[idempotent]` from the attributes; rejects arguments, repeats
/// and `#[cfg]` (a method that may vanish would shift the ids after it).
fn take_idempotent(attrs: Vec<Attribute>, errors: &mut Errors) -> (Vec<Attribute>, bool) {
    let mut idempotent = false;
    let mut kept = Vec::new();
    for attr in attrs {
        if attr.path().is_ident("idempotent") {
            if !matches!(attr.meta, Meta::Path(_)) {
                errors.push(&attr.meta, "`#[idempotent]` takes no arguments");
            } else if idempotent {
                errors.push(&attr.meta, "`#[idempotent]` is given more than once");
            }
            idempotent = true;
        } else if attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr") {
            errors.push(
                &attr.meta,
                "`#[cfg]` is not allowed on a service method: method ids are positions in the trait and must not depend on build flags",
            );
        } else {
            kept.push(attr);
        }
    }
    (kept, idempotent)
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
