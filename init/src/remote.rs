//! Opens the signed RPC API: the node key, the operators' keys, and a TCP
//! listener per configured address. Any failure closes the API and is
//! logged; the node runs on.

use std::rc::Rc;

use rpc::authorized::AuthorizedKeys;
use rpc::nodekey::NodeKey;
use rpc::server::{Dispatcher, Limits, Server};
use runtime::journal;
use serde_json::{json, Value};

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
    let any_setting = |key: &str| {
        config
            .rpc
            .as_ref()
            .and_then(|rpc| rpc.get(key))
            .and_then(|v| v.as_integer())
            .and_then(|n| u64::try_from(n).ok())
    };
    // Zero means nothing for these, so it is taken as unset; only
    // admin_reserved has a meaningful zero (no slots kept for admins).
    let setting = |key: &str| any_setting(key).filter(|n| *n > 0);
    if let Some(ms) = setting("handshake_timeout_ms") {
        limits.handshake_deadline = std::time::Duration::from_millis(ms);
    }
    if let Some(n) = setting("max_connections") {
        limits.max_connections = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = setting("max_handshaking") {
        limits.max_handshaking = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = setting("max_handshaking_per_source") {
        limits.max_handshaking_per_source = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(ms) = setting("session_idle_timeout_ms") {
        limits.session_idle = std::time::Duration::from_millis(ms);
    }
    if let Some(n) = setting("max_sessions_per_key") {
        limits.max_sessions_per_key = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = any_setting("admin_reserved") {
        limits.admin_reserved = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(ms) = setting("pressure_timeout_ms") {
        limits.pressure_deadline = std::time::Duration::from_millis(ms);
    }
    let server = Server::new(key, authorized, node.clone() as Rc<dyn Dispatcher>, limits);
    let mut bound: Vec<Value> = Vec::new();
    for address in &addresses {
        if let Some(port) = mycelium_port(address) {
            follow_mycelium(config, node, server.clone(), port);
            bound.push(json!(format!(
                "mycelium:{port} (bound when mycelium is ready)"
            )));
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

/// `mycelium` or `mycelium:PORT`: the port to listen on at the overlay address.
fn mycelium_port(address: &str) -> Option<u16> {
    match address.strip_prefix("mycelium")? {
        "" => Some(DEFAULT_PORT),
        rest => rest.strip_prefix(':')?.parse().ok(),
    }
}

/// Mycelium's admin API at its default address, where its `nodeIp` is
/// read (call-home reads it too).
pub const MYCELIUM_API: &str = "http://127.0.0.1:8989/api/v1/admin";

/// Each time the mycelium service becomes ready, reads its overlay address
/// from its API and listens there too (once per address).
fn follow_mycelium(config: &NodeConfig, node: &Rc<Node>, server: Rc<Server>, port: u16) {
    let rpc = config.rpc.as_ref();
    let setting = |key: &str, default: &str| {
        rpc.and_then(|t| t.get(key))
            .and_then(|v| v.as_str())
            .unwrap_or(default)
            .to_owned()
    };
    let service = setting("mycelium_service", "mycelium");
    let api = setting("mycelium_api", MYCELIUM_API);
    if node.with_runtime(|runtime| runtime.get(&service).is_none()) != Some(false) {
        journal::note(format_args!(
            "rpc: no `{service}` service; the mycelium listen address stays unused"
        ));
        return;
    }
    let Some(ready) = node.with_runtime(|runtime| runtime.watch_ready(&service)) else {
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
