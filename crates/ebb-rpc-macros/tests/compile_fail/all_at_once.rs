// Every mistake in one trait is reported in one compile.
#[ebb_rpc_macros::service(bogus)]
trait Many<T> {
    fn sync(&self);
    async fn mutates(&mut self, (a, b): (u8, u8));
    #[idempotent(no)]
    async fn borrowed<U>(&self, s: &str);
    async fn sync(&self);
}

fn main() {}
