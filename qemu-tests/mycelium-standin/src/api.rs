//! mycelium's HTTP admin API, the part nodes use: `GET /api/v1/admin` with
//! the node's four fields, and `GET /api/v1/admin/peers`.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::identity::Identity;
use crate::peer_stats::Peers;

/// What the API serves.
pub struct Api {
    /// The node.
    pub identity: Identity,
    /// Unix seconds when the daemon started.
    pub start_time: u64,
    /// The peers' states.
    pub peers: Arc<Mutex<Peers>>,
}

impl Api {
    /// `GET /api/v1/admin`.
    pub fn admin(&self) -> Value {
        json!({
            "nodeSubnet": self.identity.subnet(),
            "nodeIp": self.identity.address.to_string(),
            "nodePubkey": self.identity.public_hex(),
            "nodeStartTime": self.start_time,
        })
    }

    /// The peers in mycelium's shape.
    pub fn peers(&self) -> Value {
        self.peers.lock().map(|p| p.to_json()).unwrap_or_default()
    }

    fn route(&self, method: &str, path: &str) -> (u16, Value) {
        match (method, path) {
            ("GET", "/api/v1/admin") => (200, self.admin()),
            ("GET", "/api/v1/admin/peers") => (200, self.peers()),
            _ => (404, json!({ "error": "not found" })),
        }
    }

    /// Serves the REST API on `listener` forever.
    pub fn serve(self: Arc<Self>, listener: TcpListener) {
        crate::http::serve(
            listener,
            Arc::new(move |method: &str, path: &str, _body: &[u8]| self.route(method, path)),
        );
    }
}
