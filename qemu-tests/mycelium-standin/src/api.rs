//! mycelium's HTTP admin API, the part nodes use: `GET /api/v1/admin` with
//! the node's four fields, and `GET /api/v1/admin/peers`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::identity::Identity;
use crate::peers::Peers;

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
    fn admin(&self) -> Value {
        json!({
            "nodeSubnet": self.identity.subnet(),
            "nodeIp": self.identity.address.to_string(),
            "nodePubkey": self.identity.public_hex(),
            "nodeStartTime": self.start_time,
        })
    }

    fn route(&self, method: &str, path: &str) -> (u16, Value) {
        match (method, path) {
            ("GET", "/api/v1/admin") => (200, self.admin()),
            ("GET", "/api/v1/admin/peers") => {
                let peers = self.peers.lock().map(|p| p.to_json()).unwrap_or_default();
                (200, peers)
            }
            _ => (404, json!({ "error": "not found" })),
        }
    }

    /// Serves connections one at a time, forever.
    pub fn serve(&self, listener: TcpListener) {
        for stream in listener.incoming().flatten() {
            let _ = self.answer(stream);
        }
    }

    fn answer(&self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        // Headers: read to the blank line; bodies are not used here.
        let mut header = String::new();
        while reader.read_line(&mut header)? > 2 {
            header.clear();
        }
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or_default();
        let path = words.next().unwrap_or_default();
        let (status, body) = self.route(method, path);
        let body = body.to_string();
        let reason = if status == 200 { "OK" } else { "Not Found" };
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        stream.flush()
    }
}
