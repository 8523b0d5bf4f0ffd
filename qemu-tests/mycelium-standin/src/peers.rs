//! Peers: the stand-in keeps a TCP connection to every `--peers` address
//! (reconnecting every few seconds when it drops) and accepts connections
//! on the TCP listen port; each connection is a link of the overlay
//! ([`crate::net`]).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::net::Net;
use crate::netns::Outside;

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

    /// Counts bytes received from `address`.
    pub fn received(&mut self, address: SocketAddr, bytes: u64) {
        if let Some(peer) = self.list.iter_mut().find(|p| p.address == address) {
            peer.rx_bytes += bytes;
        }
    }

    /// Counts bytes sent to `address`.
    pub fn sent(&mut self, address: SocketAddr, bytes: u64) {
        if let Some(peer) = self.list.iter_mut().find(|p| p.address == address) {
            peer.tx_bytes += bytes;
        }
    }
}

/// Starts one thread per static peer and one accepting inbound peers;
/// with `outside`, their sockets are made in that namespace.
pub fn start(
    net: &Arc<Net>,
    statics: &[SocketAddr],
    listen_port: u16,
    outside: Option<Arc<Outside>>,
) {
    let peers = &net.peers;
    for address in statics {
        if let Ok(mut p) = peers.lock() {
            p.set(*address, false, State::Connecting);
        }
        let (net, address, outside) = (net.clone(), *address, outside.clone());
        let peers = net.peers.clone();
        std::thread::spawn(move || loop {
            if let Some(outside) = &outside {
                if let Err(error) = outside.enter() {
                    crate::logfmt::error(
                        "mycelium::peer_manager",
                        "Could not leave the stand-in's namespace",
                        &[("err", error.to_string())],
                    );
                    return;
                }
            }
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
                    net.run_link(address, stream);
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
    // `[::]`, dual-stack, as the real daemon listens (`:::9651`); bound on
    // a thread of its own, which leaves the stand-in's namespace first.
    let net = net.clone();
    std::thread::spawn(move || {
        if let Some(outside) = &outside {
            if outside.enter().is_err() {
                return;
            }
        }
        listen(&net, listen_port);
    });
}

/// Accepts inbound peers on `[::]:listen_port` for good.
fn listen(net: &Arc<Net>, listen_port: u16) {
    let peers = &net.peers;
    match TcpListener::bind(("::", listen_port)) {
        Ok(listener) => {
            let net = net.clone();
            let peers = peers.clone();
            {
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
                    let (net, peers) = (net.clone(), peers.clone());
                    std::thread::spawn(move || {
                        net.run_link(from, stream);
                        if let Ok(mut p) = peers.lock() {
                            p.set(from, true, State::Dead);
                        }
                    });
                }
            }
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
