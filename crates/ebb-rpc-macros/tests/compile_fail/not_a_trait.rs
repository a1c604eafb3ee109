#[ebb_rpc_macros::service]
struct NotATrait;

fn main() {}
