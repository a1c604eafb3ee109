//! `<Trait>Server<S>`: the server dispatch, binary and JSON.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Generator, method_id};
use crate::parse::Method;

impl Generator<'_> {
    /// `<Trait>Server<S>`: decodes a call, runs it on `S`, encodes the reply.
    pub(super) fn server(&self) -> TokenStream {
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

                fn json_codec(&self) -> ::core::option::Option<&'static dyn #rt::ServiceCodec> {
                    ::core::option::Option::Some(&#codec)
                }

                fn dispatch_json_split(
                    &self,
                    method_id: u16,
                    args: #private::serde_json::Value,
                    cx: #rt::CallContext,
                ) -> #rt::BoxFuture<'_, ::core::result::Result<#rt::JsonReply, #rt::DispatchError>> {
                    #rt::dispatch_json_through(self, &#codec, method_id, args, cx)
                }
            }
        }
    }
}
