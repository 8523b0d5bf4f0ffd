//! Peers: the stand-in keeps a TCP connection to every `--peers` address
//! (reconnecting every few seconds when it drops) and accepts connections
//! on the TCP listen port, so a test can see that the nodes' shared
//! segment carries traffic. It routes no overlay packets.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// The state of one peer, as mycelium's `ConnectionState` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A connection is being set up.
    Connecting,
    /// Connected.
    Alive,
    /// No connection (it failed or went away).
    Dead,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Alive => "alive",
            State::Dead => "dead",
        }
    }
}

/// One known peer.
#[derive(Debug, Clone)]
struct Peer {
    address: SocketAddr,
    inbound: bool,
    state: State,
    tx_bytes: u64,
    rx_bytes: u64,
    /// When it became known (Unix seconds).
    discovered: u64,
    /// When a connection to it last came up (Unix seconds).
    last_connected: Option<u64>,
}

/// Unix seconds now.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Each peer, its state and its byte counters.
#[derive(Debug, Default)]
pub struct Peers {
    list: Vec<Peer>,
}

impl Peers {
    /// mycelium v0.7.10's `GET /api/v1/admin/peers` shape (`PeerStats`,
    /// camelCase): `{"endpoint": {"proto", "addr": {"socket"}}, "type",
    /// "connectionState", "txBytes", "rxBytes", "discovered",
    /// "lastConnected"}`.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.list
                .iter()
                .map(|peer| {
                    json!({
                        "endpoint": { "proto": "tcp", "addr": { "socket": peer.address.to_string() } },
                        "type": if peer.inbound { "inbound" } else { "static" },
                        "connectionState": peer.state.word(),
                        "txBytes": peer.tx_bytes,
                        "rxBytes": peer.rx_bytes,
                        "discovered": peer.discovered,
                        "lastConnected": peer.last_connected,
                    })
                })
                .collect(),
        )
    }

    fn set(&mut self, address: SocketAddr, inbound: bool, state: State) {
        let connected = (state == State::Alive).then(now);
        match self.list.iter_mut().find(|p| p.address == address) {
            Some(peer) => {
                peer.state = state;
                peer.last_connected = connected.or(peer.last_connected);
            }
            None => self.list.push(Peer {
                address,
                inbound,
                state,
                tx_bytes: 0,
                rx_bytes: 0,
                discovered: now(),
                last_connected: connected,
            }),
        }
    }

    fn received(&mut self, address: SocketAddr, bytes: u64) {
        if let Some(peer) = self.list.iter_mut().find(|p| p.address == address) {
            peer.rx_bytes += bytes;
        }
    }
}

/// Reads from a peer until it goes away, counting the bytes.
fn drain(peers: &Arc<Mutex<Peers>>, address: SocketAddr, mut stream: TcpStream) {
    let mut buffer = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buffer) {
        if let Ok(mut p) = peers.lock() {
            p.received(address, n as u64);
        }
    }
}

/// Starts one thread per static peer and one accepting inbound peers.
pub fn start(peers: &Arc<Mutex<Peers>>, statics: &[SocketAddr], listen_port: u16) {
    for address in statics {
        if let Ok(mut p) = peers.lock() {
            p.set(*address, false, State::Connecting);
        }
        let (peers, address) = (peers.clone(), *address);
        std::thread::spawn(move || loop {
            if let Ok(mut p) = peers.lock() {
                p.set(address, false, State::Connecting);
            }
            match TcpStream::connect_timeout(&address, Duration::from_secs(3)) {
                Ok(stream) => {
                    crate::logfmt::info(
                        "mycelium::peer_manager",
                        "Connected to new peer",
                        &[("endpoint.address", address.to_string())],
                    );
                    if let Ok(mut p) = peers.lock() {
                        p.set(address, false, State::Alive);
                    }
                    drain(&peers, address, stream);
                    crate::logfmt::info(
                        "mycelium::peer",
                        "Peer died",
                        &[("endpoint.address", address.to_string())],
                    );
                }
                Err(error) => {
                    crate::logfmt::error(
                        "mycelium::peer_manager",
                        "Couldn't connect to peer",
                        &[
                            ("endpoint.address", address.to_string()),
                            ("err", error.to_string()),
                        ],
                    );
                }
            }
            if let Ok(mut p) = peers.lock() {
                p.set(address, false, State::Dead);
            }
            std::thread::sleep(Duration::from_secs(2));
        });
    }
    // `[::]`, dual-stack, as the real daemon listens (`:::9651`).
    match TcpListener::bind(("::", listen_port)) {
        Ok(listener) => {
            let peers = peers.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let Ok(from) = stream.peer_addr() else {
                        continue;
                    };
                    crate::logfmt::info(
                        "mycelium::peer_manager",
                        "Accepted new inbound peer",
                        &[("endpoint.address", from.to_string())],
                    );
                    if let Ok(mut p) = peers.lock() {
                        p.set(from, true, State::Alive);
                    }
                    let peers = peers.clone();
                    std::thread::spawn(move || {
                        drain(&peers, from, stream);
                        if let Ok(mut p) = peers.lock() {
                            p.set(from, true, State::Dead);
                        }
                    });
                }
            });
        }
        Err(error) => crate::logfmt::error(
            "mycelium::peer_manager",
            "Error starting TCP listener",
            &[
                ("port", listen_port.to_string()),
                ("err", error.to_string()),
            ],
        ),
    }
}
