//! From the annotated trait to a small, checked model of the service.
//!
//! Every check records its error and goes on, so one compile shows every
//! mistake in the trait at once instead of one per attempt.

use proc_macro2::TokenStream;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Block, Expr, Ident, ItemTrait, Lit, Meta, Path, Token, TraitItem, Type,
    TypeParamBound, Visibility, parse_quote,
};

/// The most methods one service may declare; mirrors
/// `ebb_rpc::service::MAX_METHODS` (ids are `u16`, the table stays small).
pub const MAX_METHODS: usize = 1024;

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
    /// Attributes passed through to the trait method (`#[idempotent]` and
    /// `#[blocking]` removed).
    pub attrs: Vec<Attribute>,
    pub ident: Ident,
    pub idempotent: bool,
    /// Runs on the server's worker threads, off its I/O loop.
    pub blocking: bool,
    pub params: Vec<Param>,
    /// `()` when the method declares no return type.
    pub output: Type,
    pub default: Option<Block>,
}

pub struct Param {
    pub ident: Ident,
    pub ty: Type,
}

mod method;

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
                    if let Some(m) = method::parse_method(f, &item.ident, &mut errors) {
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
