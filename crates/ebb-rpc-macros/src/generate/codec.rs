//! `<Trait>Codec`: the method table and the JSON mapping.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;

use super::{Generator, json_args_fn, method_id, type_name};

impl Generator<'_> {
    /// The method table and the JSON mapping, usable without an
    /// implementation (CLI and gateway).
    pub(super) fn codec(&self) -> TokenStream {
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
            let blocking = m.blocking;
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
                    blocking: #blocking,
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
}
