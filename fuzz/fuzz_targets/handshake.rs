//! Arbitrary bytes at every step of the handshake state machine, node side
//! and client side: malformed input must be an error, never a panic, and
//! nothing but a correct operator signature may authenticate.
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use rpc::handshake::{client_check, client_hello, node_reply, verify_operator, VERSION};
use rpc::session::Channel;
use x25519_dalek::{PublicKey, StaticSecret};

fuzz_target!(|data: &[u8]| {
    let node_key = SigningKey::from_bytes(&[1; 32]);
    let node_ephemeral = StaticSecret::from([3; 32]);
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len().saturating_sub(1));
    let (first, rest) = data.get(1..).unwrap_or_default().split_at(split.min(data.len().saturating_sub(1)));
    // Node side: an arbitrary client hello, then an arbitrary sealed proof.
    if let Ok(reply) = node_reply(first, &node_key, &node_ephemeral, &[5; 32]) {
        let mut rx = Channel::new(&reply.keys.c2s);
        if let Ok(proof) = rx.open(rest) {
            let _ = verify_operator(&proof, &reply.client_transcript);
        }
        let _ = verify_operator(rest, &reply.client_transcript);
    }
    // Client side: an arbitrary node hello must not pass the pin check.
    let client_ephemeral = StaticSecret::from([2; 32]);
    let hello = client_hello(VERSION, &PublicKey::from(&client_ephemeral), &[4; 32]);
    let pinned = node_key.verifying_key();
    if client_check(&hello, data, &client_ephemeral, Some(&pinned)).is_ok() {
        // Only the real node's signature over this very hello can get here.
        let genuine = node_reply(&hello, &node_key, &node_ephemeral, &[5; 32]).map(|r| r.hello);
        assert!(genuine.is_ok());
    }
});
