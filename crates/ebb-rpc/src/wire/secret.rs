//! What proves a client id: the id is a hash of a secret only its client
//! holds, so a handshake that shows the secret proves the id without the
//! server keeping anything per client.
//!
//! Why a commitment rather than a secret the server stores at the first
//! handshake: a stored binding is forgotten when the session expires (or
//! the server restarts), and the first peer to handshake after that could
//! claim the id; a commitment holds for every session and incarnation,
//! and costs the server no table.

use ebb_core::ClientId;

/// Bytes of a client secret on the wire.
pub const CLIENT_SECRET_BYTES: usize = 16;

/// Separates this use of SHA-256 from any other, so a digest computed for
/// something else is never a client id.
const CLIENT_ID_DOMAIN: &[u8] = b"ebb client id v1\0";

/// 128 random bits a client keeps to itself; its [`ClientId`] is derived
/// from it. Shown to the server in every handshake (so without TLS an
/// on-path observer learns it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClientSecret(pub u128);

impl std::fmt::Debug for ClientSecret {
    /// Never prints the secret: its id is enough to tell two apart.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientSecret(of {})", self.client_id())
    }
}

impl ClientSecret {
    /// A fresh secret from `rng`, which must be seeded from the operating
    /// system's randomness outside tests: a predictable secret proves
    /// nothing.
    pub fn random(rng: &mut ebb_core::Rng) -> ClientSecret {
        let hi = u128::from(rng.next_u64());
        let lo = u128::from(rng.next_u64());
        ClientSecret((hi << 64) | lo)
    }

    /// The client id this secret proves: the first 128 bits of
    /// SHA-256(domain, secret). Finding another secret with the same id
    /// takes about 2^128 tries.
    pub fn client_id(&self) -> ClientId {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(CLIENT_ID_DOMAIN);
        ctx.update(&self.0.to_le_bytes());
        let digest = ctx.finish();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest.as_ref()[..16]);
        ClientId(u128::from_le_bytes(id))
    }

    /// Whether this secret proves `id`.
    pub fn proves(&self, id: ClientId) -> bool {
        self.client_id() == id
    }
}
