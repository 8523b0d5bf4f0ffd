//! What the admin API shows of the peers: each one's state, byte counters
//! and times, in mycelium's `PeerStats` shape.

use std::net::SocketAddr;

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

    /// Records `address` (a peer we dialled, or one that dialled us) in
    /// `state`.
    pub fn set(&mut self, address: SocketAddr, inbound: bool, state: State) {
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
