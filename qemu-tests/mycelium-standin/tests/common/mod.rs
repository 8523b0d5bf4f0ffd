//! What the stand-in's tests share: a free port, and mycelium's overlay
//! address of a key computed here from the crates (x25519, blake3), not by
//! the stand-in.
#![allow(dead_code, clippy::indexing_slicing)]

use std::net::{Ipv6Addr, TcpListener};

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// mycelium's overlay address of an X25519 secret (crypto.rs): blake3 of
/// the public key, first byte `0x04 | parity`.
pub fn address_of(secret: [u8; 32]) -> Ipv6Addr {
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
    let mut hash = [0u8; 16];
    blake3::Hasher::new()
        .update(public.as_bytes())
        .finalize_xof()
        .fill(&mut hash);
    hash[0] = 0x04 | (hash[0].count_ones() % 2) as u8;
    Ipv6Addr::from(hash)
}
