//! The test vectors of PROTOCOL.md §5, recomputed from fixed keys: the
//! document and the code cannot drift apart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use ed25519_dalek::SigningKey;
use rpc::handshake::{
    client_check, client_hello, encode_proof, node_reply, verify_operator, VERSION,
};
use rpc::session::Channel;
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{HashAlg, PrivateKey};
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// (label, hex) for every vector, computed from the fixed inputs of §5.
fn compute() -> Vec<(&'static str, String)> {
    let node_key = SigningKey::from_bytes(&[0x01; 32]);
    let client_ephemeral = StaticSecret::from([0x02; 32]);
    let node_ephemeral = StaticSecret::from([0x03; 32]);
    let hello = client_hello(VERSION, &XPublic::from(&client_ephemeral), &[0x04; 32]);
    let reply = node_reply(&hello, &node_key, &node_ephemeral, &[0x05; 32]).unwrap();
    let view = client_check(
        &hello,
        &reply.hello,
        &client_ephemeral,
        Some(&node_key.verifying_key()),
    )
    .unwrap();
    assert_eq!(view.client_transcript, reply.client_transcript);
    assert_eq!(*view.keys.c2s, *reply.keys.c2s);
    let pair = Ed25519Keypair::from_seed(&[0x06; 32]);
    let operator = PrivateKey::new(KeypairData::Ed25519(pair), "operator@example").unwrap();
    let signature = operator
        .sign("spore-rpc-v1", HashAlg::Sha512, &view.client_transcript)
        .unwrap();
    let proof = encode_proof(&signature).unwrap();
    assert!(verify_operator(&proof, &reply.client_transcript).is_ok());
    let mut c2s = Channel::new(&view.keys.c2s);
    let mut s2c = Channel::new(&reply.keys.s2c);
    let sealed_proof = c2s.seal(&proof).unwrap();
    let granted = s2c.seal(br#"{"role":"admin"}"#).unwrap();
    let first_request = c2s
        .seal(br#"{"jsonrpc":"2.0","id":1,"method":"node.info"}"#)
        .unwrap();
    vec![
        ("client_hello", hex(&hello)),
        ("node_hello", hex(&reply.hello)),
        ("client_transcript", hex(&reply.client_transcript)),
        ("key_c2s", hex(&view.keys.c2s[..])),
        ("key_s2c", hex(&view.keys.s2c[..])),
        ("operator_proof", hex(&proof)),
        ("sealed_proof", hex(&sealed_proof)),
        ("granted", hex(&granted)),
        ("first_request", hex(&first_request)),
    ]
}

/// The hex blocks of PROTOCOL.md §5, by label.
fn documented() -> std::collections::HashMap<String, String> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap();
    let section = text
        .split("## 5. Test vectors")
        .nth(1)
        .expect("PROTOCOL.md has §5");
    let mut out = std::collections::HashMap::new();
    let mut label: Option<String> = None;
    for line in section.lines() {
        if let Some(name) = line.strip_prefix("- `").and_then(|l| l.split('`').next()) {
            label = Some(name.to_owned());
            out.insert(name.to_owned(), String::new());
        } else if let Some(name) = &label {
            let value = line.trim();
            if !value.is_empty() && value.chars().all(|c| c.is_ascii_hexdigit()) {
                if let Some(slot) = out.get_mut(name) {
                    slot.push_str(value);
                }
            }
        }
    }
    out
}

#[test]
fn protocol_document_vectors_match_the_code() {
    let doc = documented();
    for (label, value) in compute() {
        if std::env::var_os("PRINT_VECTORS").is_some() {
            println!("{label} {value}");
            continue;
        }
        assert_eq!(
            doc.get(label),
            Some(&value),
            "vector `{label}` in PROTOCOL.md §5"
        );
    }
}
