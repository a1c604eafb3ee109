//! `<Trait>Client<T>`: the typed client stub.

use proc_macro2::TokenStream;
use quote::quote;

use super::Generator;

impl Generator<'_> {
    /// `<Trait>Client<T>`: one typed async method per service method.
    pub(super) fn client(&self) -> TokenStream {
        let (rt, private, codec, client) = (&self.rt, &self.private, &self.codec, &self.client);
        let (vis, service) = (&self.service.vis, &self.service.ident);
        let transport = &self.transport;
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

            impl #client<#transport::PooledClient> {
                /// Connects to `addr` over a pool of
                /// `DEFAULT_POOL_CONNECTIONS` connections, each its own
                /// at-most-once session; clones of the client share the pool.
                pub async fn connect(addr: &str) -> ::core::result::Result<Self, #transport::PoolError> {
                    ::core::result::Result::Ok(Self::new(#transport::PooledClient::connect(addr).await?))
                }

                /// Connects with a chosen pool size and client configuration.
                pub async fn connect_with(
                    addr: &str,
                    config: #transport::PoolConfig,
                ) -> ::core::result::Result<Self, #transport::PoolError> {
                    ::core::result::Result::Ok(Self::new(#transport::PooledClient::connect_with(addr, config).await?))
                }
            }
        }
    }
}
