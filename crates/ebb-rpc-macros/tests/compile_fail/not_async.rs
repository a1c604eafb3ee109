#[ebb_rpc_macros::service]
trait NotAsync {
    fn plain(&self) -> u8;
    async fn fine(&self) -> u8;
}

fn main() {}
