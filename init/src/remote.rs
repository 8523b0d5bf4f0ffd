//! Opens the signed RPC API: the node key, the operators' keys, and a TCP
//! listener per configured address. Any failure closes the API and is
//! logged; the node runs on.

use std::rc::Rc;

use noderpc::server::{Dispatcher, Limits, Server};
use rpc::authorized::AuthorizedKeys;
use rpc::nodekey::NodeKey;
use runtime::journal;
use serde_json::{json, Value};

use crate::config::{Listen, NodeConfig, Paths, Rpc, DEFAULT_PORT};
use crate::node::Node;

/// The addresses to listen on: `[rpc] listen` from spore.toml, default
/// loopback and the mycelium address (bound once mycelium is ready).
fn listen_addresses(config: &NodeConfig) -> Vec<Listen> {
    config.rpc.listen.clone().unwrap_or_else(|| {
        vec![
            Listen::Address(std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))),
            Listen::Mycelium(DEFAULT_PORT),
        ]
    })
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
    let limits = limits(&config.rpc);
    let server = Server::new(key, authorized, node.clone() as Rc<dyn Dispatcher>, limits);
    if let Ok(mut held) = node.rpc_server.try_borrow_mut() {
        *held = Rc::downgrade(&server);
    }
    let (mut bound, mut pending, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for address in &addresses {
        let address = match address {
            Listen::Mycelium(port) => {
                follow_mycelium(config, node, server.clone(), *port);
                pending.push(json!(format!(
                    "mycelium:{port} (bound when mycelium is ready)"
                )));
                continue;
            }
            Listen::Address(address) => address.to_string(),
        };
        match bind(&address) {
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
            Err(error) => {
                journal::note(format_args!("rpc: cannot listen on {address}: {error}"));
                failed.push(json!(format!("{address}: {error}")));
            }
        }
    }
    // Open means some listener is bound now, not that one may be later.
    node.set_posture(json!({
        "auth": true,
        "open": !bound.is_empty(),
        "listen": bound,
        "pending": pending,
        "failed": failed,
        "node_key": "ok",
        "node_key_fingerprint": fingerprint,
        "node_key_public": public,
        "authorized_keys": authorized_path.display().to_string(),
    }));
}

/// The server's bounds: `[rpc]`'s settings over the defaults. Zero means
/// nothing for most of them, so it is taken as unset; only admin_reserved
/// has a meaningful zero (no slots kept for admins).
fn limits(rpc: &Rpc) -> Limits {
    let mut limits = Limits::default();
    let set = |n: Option<u64>| n.filter(|n| *n > 0);
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let ms = std::time::Duration::from_millis;
    if let Some(n) = set(rpc.handshake_timeout_ms) {
        limits.handshake_deadline = ms(n);
    }
    if let Some(n) = set(rpc.pressure_timeout_ms) {
        limits.pressure_deadline = ms(n);
    }
    if let Some(n) = set(rpc.session_idle_timeout_ms) {
        limits.session_idle = ms(n);
    }
    if let Some(n) = set(rpc.max_connections) {
        limits.max_connections = count(n);
    }
    if let Some(n) = set(rpc.max_handshaking) {
        limits.max_handshaking = count(n);
    }
    if let Some(n) = set(rpc.max_handshaking_per_source) {
        limits.max_handshaking_per_source = count(n);
    }
    if let Some(n) = set(rpc.max_sessions_per_key) {
        limits.max_sessions_per_key = count(n);
    }
    if let Some(n) = rpc.admin_reserved {
        limits.admin_reserved = count(n);
    }
    limits
}

/// Mycelium's admin API at its default address, where its `nodeIp` is
/// read (call-home reads it too).
pub const MYCELIUM_API: &str = "http://127.0.0.1:8989/api/v1/admin";

/// Each time the mycelium service becomes ready, reads its overlay address
/// from its API and listens there too (once per address).
fn follow_mycelium(config: &NodeConfig, node: &Rc<Node>, server: Rc<Server>, port: u16) {
    let service = config
        .rpc
        .mycelium_service
        .clone()
        .unwrap_or_else(|| "mycelium".into());
    let api = config
        .rpc
        .mycelium_api
        .clone()
        .unwrap_or_else(|| MYCELIUM_API.into());
    if node.with_runtime(|runtime| runtime.get(&service).is_none()) != Some(false) {
        journal::note(format_args!(
            "rpc: no `{service}` service; the mycelium listen address stays unused"
        ));
        return;
    }
    let Some(ready) = node.with_runtime(|runtime| runtime.runtime_mut().watch_ready(&service))
    else {
        return;
    };
    let executor = node.executor;
    let node = node.clone();
    executor
        .spawn(async move {
            let mut bound: Vec<std::net::IpAddr> = Vec::new();
            while ready.recv().await.is_ok() {
                let Some(ip) = overlay_address(&api).await else {
                    journal::note(format_args!(
                        "rpc: {service} is ready but {api} gave no nodeIp"
                    ));
                    continue;
                };
                if bound.contains(&ip) {
                    continue;
                }
                let address = std::net::SocketAddr::new(ip, port);
                match bind(&address.to_string()) {
                    Ok(listener) => {
                        journal::note(format_args!("rpc: listening on {address} (mycelium)"));
                        bound.push(ip);
                        node.add_listen_address(address.to_string());
                        executor
                            .spawn(server.clone().serve(listener, executor))
                            .detach();
                    }
                    Err(error) => {
                        journal::note(format_args!("rpc: cannot listen on {address}: {error}"))
                    }
                }
            }
        })
        .detach();
}

/// `nodeIp` from mycelium's `GET /api/v1/admin`.
async fn overlay_address(api: &str) -> Option<std::net::IpAddr> {
    let (status, body) = runtime::probe::http_get(api, std::time::Duration::from_secs(5)).await?;
    if status != 200 {
        return None;
    }
    let value: Value = serde_json::from_slice(&body).ok()?;
    value.get("nodeIp")?.as_str()?.parse().ok()
}

/// Connections the kernel queues for accept(2) on an RPC listener. A burst
/// of connects larger than the queue loses SYNs, and a lost SYN costs a
/// client (an operator among a flood) a second or more of retransmits; the
/// queue is cheap and admission drains it quickly. Capped by
/// net.core.somaxconn.
const LISTEN_BACKLOG: libc::c_int = 4096;

fn bind(address: &str) -> std::io::Result<smol::net::TcpListener> {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind(address)?;
    // listen(2) again on a listening socket sets its backlog (std's is 128).
    // SAFETY: listen on a socket we own, with an integer backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        journal::note(format_args!(
            "rpc: listen backlog on {address}: {}",
            std::io::Error::last_os_error()
        ));
    }
    smol::net::TcpListener::try_from(listener)
}
