//! From the checked model to code: one method per emitted item.
//!
//! All generated code names runtime items through `<krate>::service` (by
//! default `::ebb::rpc::service`) and the standard library through `::core`
//! and `::std`, so it compiles whatever the user's module has in scope.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::Ident;
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use crate::parse::{Method, Service};

pub struct Generator<'a> {
    service: &'a Service,
    /// `<krate>::service`
    rt: TokenStream,
    /// `<krate>::service::__private`
    private: TokenStream,
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

    /// The method table and the JSON mapping, usable without an
    /// implementation (CLI and gateway).
    fn codec(&self) -> TokenStream {
        let (rt, private, codec) = (&self.rt, &self.private, &self.codec);
        let vis = &self.service.vis;
        let name = self.service.ident.unraw().to_string();
        let doc = format!(
            "Method table and JSON mapping of the `{name}` service, for callers without an implementation."
        );
        let entries = self.service.methods.iter().enumerate().map(|(i, m)| {
            let id = method_id(i);
            let method = m.ident.unraw().to_string();
            let idempotent = m.idempotent;
            let returns = type_name(&m.output);
            let params = m.params.iter().map(|p| {
                let pname = p.ident.unraw().to_string();
                let ty = type_name(&p.ty);
                quote!(#rt::ParamInfo { name: #pname, ty: #ty })
            });
            quote! {
                #rt::MethodInfo {
                    service: #name,
                    id: #id,
                    name: #method,
                    idempotent: #idempotent,
                    params: &[#(#params),*],
                    returns: #returns,
                }
            }
        });
        let json_args_fns = self.service.methods.iter().enumerate().map(|(i, m)| {
            let f = json_args_fn(m);
            let tys = m.params.iter().map(|p| &p.ty);
            let takes = (0..m.params.len()).map(|j| quote!(__ebb_args.take(#j)?,));
            quote! {
                fn #f(
                    __ebb_json: #private::serde_json::Value,
                ) -> ::core::result::Result<(#(#tys,)*), #rt::DispatchError> {
                    #[allow(unused_mut)]
                    let mut __ebb_args = #private::JsonArgs::new(&Self::METHODS[#i], __ebb_json)?;
                    ::core::result::Result::Ok((#(#takes)*))
                }
            }
        });
        let encode_arms = self.service.methods.iter().enumerate().map(|(i, m)| {
            let id = method_id(i);
            let f = json_args_fn(m);
            quote!(#id => #private::json_args_to_bytes(__ebb_method, &Self::#f(args)?),)
        });
        let decode_arms = self.service.methods.iter().enumerate().map(|(i, m)| {
            let id = method_id(i);
            let out = &m.output;
            quote!(#id => #private::reply_bytes_to_json::<#out>(__ebb_method, reply),)
        });
        quote! {
            #[doc = #doc]
            #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug, ::core::default::Default)]
            #vis struct #codec;

            impl #codec {
                /// The service's name: the trait's name.
                pub const NAME: &'static str = #name;
                /// The method table; ids are positions in the trait.
                pub const METHODS: &'static [#rt::MethodInfo] = &[#(#entries),*];

                /// The entry of `method` in this table, or `UnknownMethod`
                /// when it belongs to another service or table.
                fn __ebb_own(method: &#rt::MethodInfo) -> ::core::result::Result<&'static #rt::MethodInfo, #rt::DispatchError> {
                    match Self::METHODS.get(usize::from(method.id)) {
                        ::core::option::Option::Some(m) if m.name == method.name && method.service == Self::NAME => ::core::result::Result::Ok(m),
                        _ => ::core::result::Result::Err(#rt::DispatchError::UnknownMethod(
                            ::std::format!("{}.{} (this is {})", method.service, method.name, Self::NAME),
                        )),
                    }
                }

                #(#json_args_fns)*
            }

            impl #rt::ServiceCodec for #codec {
                fn name(&self) -> &'static str {
                    Self::NAME
                }

                fn methods(&self) -> &'static [#rt::MethodInfo] {
                    Self::METHODS
                }

                fn encode_json_args(
                    &self,
                    method: &#rt::MethodInfo,
                    args: #private::serde_json::Value,
                ) -> ::core::result::Result<#private::Bytes, #rt::DispatchError> {
                    let __ebb_method = Self::__ebb_own(method)?;
                    match __ebb_method.id {
                        #(#encode_arms)*
                        _ => ::core::result::Result::Err(#rt::DispatchError::UnknownMethod(::std::format!("{}#{}", Self::NAME, method.id))),
                    }
                }

                fn decode_json_reply(
                    &self,
                    method: &#rt::MethodInfo,
                    reply: &[u8],
                ) -> ::core::result::Result<#private::serde_json::Value, #rt::DispatchError> {
                    let __ebb_method = Self::__ebb_own(method)?;
                    match __ebb_method.id {
                        #(#decode_arms)*
                        _ => ::core::result::Result::Err(#rt::DispatchError::UnknownMethod(::std::format!("{}#{}", Self::NAME, method.id))),
                    }
                }
            }
        }
    }

    /// `<Trait>Server<S>`: decodes a call, runs it on `S`, encodes the reply.
    fn server(&self) -> TokenStream {
        let (rt, private, codec, server) = (&self.rt, &self.private, &self.codec, &self.server);
        let (vis, service) = (&self.service.vis, &self.service.ident);
        let doc = format!(
            "Serves a `{service}` implementation: hand it to an ebb server, or wrap it in a `LocalTransport`."
        );
        let call = |m: &Method| {
            let ident = &m.ident;
            let names = m.params.iter().map(|p| &p.ident);
            quote!(<S as #service>::#ident(&self.service, #(#names),*).await)
        };
        let binary_arms = self.service.methods.iter().enumerate().map(|(i, m)| {
            let id = method_id(i);
            let names = m.params.iter().map(|p| &p.ident);
            let tys = m.params.iter().map(|p| &p.ty);
            let call = call(m);
            quote! {
                #id => {
                    let __ebb_method = &#codec::METHODS[#i];
                    let (#(#names,)*) = #private::decode_args::<(#(#tys,)*)>(__ebb_method, &args)?;
                    let __ebb_reply = #call;
                    #private::encode_reply(__ebb_method, &__ebb_reply)
                }
            }
        });
        let json_arms = self.service.methods.iter().enumerate().map(|(i, m)| {
            let id = method_id(i);
            let names = m.params.iter().map(|p| &p.ident);
            let f = json_args_fn(m);
            let call = call(m);
            quote! {
                #id => {
                    let (#(#names,)*) = #codec::#f(args)?;
                    let __ebb_reply = #call;
                    #private::reply_to_json(__ebb_method, &__ebb_reply)
                }
            }
        });
        quote! {
            #[doc = #doc]
            #[derive(::core::fmt::Debug, ::core::default::Default)]
            #vis struct #server<S> {
                service: S,
            }

            impl<S: #service> #server<S> {
                /// Serves `service`.
                pub fn new(service: S) -> Self {
                    Self { service }
                }

                /// The implementation, e.g. to read its counters in a test.
                pub fn service(&self) -> &S {
                    &self.service
                }

                /// Gives the implementation back.
                pub fn into_inner(self) -> S {
                    self.service
                }
            }

            impl<S: #service> #rt::ServiceDispatch for #server<S> {
                fn name(&self) -> &'static str {
                    #codec::NAME
                }

                fn methods(&self) -> &'static [#rt::MethodInfo] {
                    #codec::METHODS
                }

                fn dispatch(
                    &self,
                    method_id: u16,
                    args: #private::Bytes,
                ) -> #rt::BoxFuture<'_, ::core::result::Result<#private::Bytes, #rt::DispatchError>> {
                    ::std::boxed::Box::pin(async move {
                        match method_id {
                            #(#binary_arms)*
                            _ => ::core::result::Result::Err(#rt::DispatchError::UnknownMethod(
                                ::std::format!("{}#{}", #codec::NAME, method_id),
                            )),
                        }
                    })
                }

                fn dispatch_json(
                    &self,
                    method: &str,
                    args: #private::serde_json::Value,
                ) -> #rt::BoxFuture<'_, ::core::result::Result<#private::serde_json::Value, #rt::DispatchError>> {
                    let __ebb_method = #private::method_by_name(#codec::METHODS, #codec::NAME, method);
                    ::std::boxed::Box::pin(async move {
                        let __ebb_method = __ebb_method?;
                        match __ebb_method.id {
                            #(#json_arms)*
                            _ => ::core::result::Result::Err(#rt::DispatchError::UnknownMethod(
                                ::std::format!("{}.{}", #codec::NAME, __ebb_method.name),
                            )),
                        }
                    })
                }
            }
        }
    }

    /// `<Trait>Client<T>`: one typed async method per service method.
    fn client(&self) -> TokenStream {
        let (rt, private, codec, client) = (&self.rt, &self.private, &self.codec, &self.client);
        let (vis, service) = (&self.service.vis, &self.service.ident);
        let doc = format!(
            "Calls a `{service}` service through a transport; every method ends with the reply or a typed `CallError`."
        );
        let methods = self.service.methods.iter().enumerate().map(|(i, m)| {
            let ident = &m.ident;
            let docs = m.attrs.iter().filter(|a| a.path().is_ident("doc"));
            let params = m.params.iter().map(|p| {
                let (name, ty) = (&p.ident, &p.ty);
                quote!(#name: #ty)
            });
            let names = m.params.iter().map(|p| &p.ident);
            let out = &m.output;
            let semantics = if m.idempotent {
                "Idempotent: the transport may send it more than once (at-least-once)."
            } else {
                "Not idempotent: it runs at most once."
            };
            quote! {
                #(#docs)*
                ///
                #[doc = #semantics]
                pub async fn #ident(&self, #(#params),*) -> ::core::result::Result<#out, #private::CallError> {
                    let __ebb_method = &#codec::METHODS[#i];
                    let __ebb_args = #private::encode_args(__ebb_method, &(#(#names,)*))?;
                    let __ebb_reply = #rt::Transport::call(&self.transport, __ebb_method, __ebb_args, self.options).await?;
                    #private::decode_reply::<#out>(__ebb_method, &__ebb_reply)
                }
            }
        });
        quote! {
            #[doc = #doc]
            #[derive(::core::clone::Clone, ::core::fmt::Debug)]
            #vis struct #client<T> {
                transport: T,
                options: #rt::CallOptions,
            }

            impl<T: #rt::Transport> #client<T> {
                /// A client with default call options.
                pub fn new(transport: T) -> Self {
                    Self { transport, options: ::core::default::Default::default() }
                }

                /// Options (such as the deadline) for every later call.
                pub fn with_options(mut self, options: #rt::CallOptions) -> Self {
                    self.options = options;
                    self
                }

                /// The options every call gets.
                pub fn options(&self) -> #rt::CallOptions {
                    self.options
                }

                /// The transport calls go through.
                pub fn transport(&self) -> &T {
                    &self.transport
                }

                #(#methods)*
            }
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
