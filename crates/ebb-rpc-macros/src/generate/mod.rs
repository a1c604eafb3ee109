//! From the checked model to code: one method per emitted item.
//!
//! All generated code names runtime items through `<krate>::service` (by
//! default `::ebb::rpc::service`; the pooled client's constructors also name
//! `<krate>::transport`) and the standard library through `::core`
//! and `::std`, so it compiles whatever the user's module has in scope.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::Ident;
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use crate::parse::{Method, Service};

mod client;
mod codec;
mod server;

pub struct Generator<'a> {
    service: &'a Service,
    /// `<krate>::service`
    rt: TokenStream,
    /// `<krate>::service::__private`
    private: TokenStream,
    /// `<krate>::transport`: where the pooled client lives.
    transport: TokenStream,
    codec: Ident,
    server: Ident,
    client: Ident,
}

impl<'a> Generator<'a> {
    pub fn new(service: &'a Service) -> Generator<'a> {
        let krate = &service.krate;
        let name = service.ident.unraw();
        Generator {
            service,
            rt: quote!(#krate::service),
            private: quote!(#krate::service::__private),
            transport: quote!(#krate::transport),
            codec: format_ident!("{name}Codec"),
            server: format_ident!("{name}Server"),
            client: format_ident!("{name}Client"),
        }
    }

    pub fn expand(&self) -> TokenStream {
        let mut out = TokenStream::new();
        out.extend(self.service_trait());
        out.extend(self.wire_assertions());
        out.extend(self.codec());
        out.extend(self.server());
        out.extend(self.client());
        out
    }

    /// The trait, with each `async fn` turned into a `Send` future so that a
    /// server can spawn the calls on a multi-threaded runtime.
    fn service_trait(&self) -> TokenStream {
        let Service {
            attrs,
            vis,
            ident,
            supertraits,
            ..
        } = self.service;
        let methods = self.service.methods.iter().map(|m| {
            let Method {
                attrs,
                ident,
                output,
                ..
            } = m;
            let params = m.params.iter().map(|p| {
                let (name, ty) = (&p.ident, &p.ty);
                quote!(#name: #ty)
            });
            let body = match &m.default {
                Some(block) => quote!({ async move #block }),
                None => quote!(;),
            };
            quote! {
                #(#attrs)*
                fn #ident(&self, #(#params),*)
                    -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
                    #body
            }
        });
        let plus = (!supertraits.is_empty()).then(|| quote!(+));
        quote! {
            #(#attrs)*
            #vis trait #ident: #supertraits #plus ::core::marker::Send + ::core::marker::Sync + 'static {
                #(#methods)*
            }
        }
    }

    /// Checks every parameter and return type for `Serialize +
    /// DeserializeOwned + Send + 'static`, with the error on the type itself.
    fn wire_assertions(&self) -> TokenStream {
        let private = &self.private;
        let checks = self.service.methods.iter().flat_map(|m| {
            m.params
                .iter()
                .map(|p| &p.ty)
                .chain(std::iter::once(&m.output))
                .map(|ty| quote_spanned!(ty.span()=> #private::assert_wire::<#ty>();))
        });
        quote! {
            const _: () = { #(#checks)* };
        }
    }
}

fn method_id(index: usize) -> TokenStream {
    // The parser caps the method count far below u16::MAX.
    let id = u16::try_from(index).unwrap_or(u16::MAX);
    syn::LitInt::new(&format!("{id}u16"), Span::call_site()).into_token_stream()
}

fn json_args_fn(m: &Method) -> Ident {
    format_ident!("__ebb_json_args_{}", m.ident.unraw())
}

/// The type as a user would write it (`Option<String>`), for messages: the
/// token printer's spaces are kept only between two words.
fn type_name(ty: &syn::Type) -> String {
    let raw = ty.to_token_stream().to_string();
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::with_capacity(raw.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let word = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
            if word(chars.get(i.wrapping_sub(1))) && word(chars.get(i + 1)) {
                out.push(' ');
            }
        } else {
            out.push(c);
            if c == ',' {
                out.push(' ');
            }
        }
    }
    out
}
