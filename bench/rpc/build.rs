//! Generates tonic's client and server for the echo service from a Rust
//! description (tonic-build's manual mode), so no `protoc` is needed.

fn main() {
    let echo = tonic_build::manual::Service::builder()
        .name("Echo")
        .package("bench")
        .method(
            tonic_build::manual::Method::builder()
                .name("echo")
                .route_name("Echo")
                .input_type("crate::sys_tonic::EchoMsg")
                .output_type("crate::sys_tonic::EchoMsg")
                .codec_path("tonic::codec::ProstCodec")
                .build(),
        )
        .build();
    tonic_build::manual::Builder::new().compile(&[echo]);
}
