//! Opens the signed RPC API: the node key, the operators' keys, and a TCP
//! listener per configured address. Any failure closes the API and is
//! logged; the node runs on.

use std::rc::Rc;

use rpc::authorized::AuthorizedKeys;
use rpc::nodekey::NodeKey;
use rpc::server::{Dispatcher, Limits, Server};
use serde_json::{json, Value};
use svc::journal;

use crate::config::{NodeConfig, Paths};
use crate::node::Node;

/// The RPC port when an address gives none.
pub const DEFAULT_PORT: u16 = 9999;

/// The addresses to listen on: `[rpc] listen` from spore.toml, default
/// loopback. `mycelium` (the overlay address) is reported as not yet bound.
fn listen_addresses(config: &NodeConfig) -> Vec<String> {
    let configured = config
        .rpc
        .as_ref()
        .and_then(|rpc| rpc.get("listen"))
        .and_then(|listen| listen.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        });
    configured.unwrap_or_else(|| vec![format!("127.0.0.1:{DEFAULT_PORT}"), "mycelium".into()])
}

/// Starts the API; records what it did in the node's posture for node.info.
pub fn start(paths: &Paths, config: &NodeConfig, node: &Rc<Node>) {
    let addresses = listen_addresses(config);
    let key_path = paths.state_dir.join("node_key");
    let key = match NodeKey::load_or_generate(&key_path) {
        Ok((key, created)) => {
            if created {
                journal::note(format_args!("generated node key {}", key_path.display()));
            }
            journal::note(format_args!(
                "node key {} ({})",
                key.fingerprint(),
                key.openssh_public()
            ));
            key
        }
        Err(error) => {
            journal::note(format_args!("rpc API closed: node key: {error}"));
            node.set_posture(json!({ "auth": true, "open": false, "node_key": error.to_string() }));
            return;
        }
    };
    let authorized_path = paths.config_dir.join("authorized_keys");
    let authorized = AuthorizedKeys::load(&authorized_path, &mut |line| {
        journal::note(format_args!("rpc: {line}"))
    });
    if authorized.is_empty() {
        journal::note(format_args!(
            "rpc: no operator key in {}; every connection will be refused",
            authorized_path.display()
        ));
    }
    let fingerprint = key.fingerprint();
    let public = key.openssh_public();
    let mut limits = Limits::default();
    if let Some(ms) = config
        .rpc
        .as_ref()
        .and_then(|rpc| rpc.get("handshake_timeout_ms"))
        .and_then(|v| v.as_integer())
        .and_then(|ms| u64::try_from(ms).ok())
        .filter(|ms| *ms > 0)
    {
        limits.handshake_deadline = std::time::Duration::from_millis(ms);
    }
    let server = Server::new(key, authorized, node.clone() as Rc<dyn Dispatcher>, limits);
    let mut bound: Vec<Value> = Vec::new();
    for address in &addresses {
        if address == "mycelium" {
            journal::note("rpc: listening on the mycelium address is not supported yet; skipped");
            continue;
        }
        match bind(address) {
            Ok(listener) => {
                let local = listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| address.clone());
                journal::note(format_args!("rpc: listening on {local}"));
                bound.push(json!(local));
                node.executor
                    .spawn(server.clone().serve(listener, node.executor))
                    .detach();
            }
            Err(error) => journal::note(format_args!("rpc: cannot listen on {address}: {error}")),
        }
    }
    node.set_posture(json!({
        "auth": true,
        "open": !bound.is_empty(),
        "listen": bound,
        "node_key": "ok",
        "node_key_fingerprint": fingerprint,
        "node_key_public": public,
        "authorized_keys": authorized_path.display().to_string(),
    }));
}

fn bind(address: &str) -> std::io::Result<smol::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    smol::net::TcpListener::try_from(listener)
}
