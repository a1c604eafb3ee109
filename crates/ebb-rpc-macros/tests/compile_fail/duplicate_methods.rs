#[ebb_rpc_macros::service]
trait Duplicates {
    async fn get(&self, key: String) -> u8;
    async fn put(&self, key: String);
    async fn get(&self, other: u64) -> u8;
}

fn main() {}
