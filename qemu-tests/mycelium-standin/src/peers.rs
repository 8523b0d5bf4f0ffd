//! Peers: the stand-in keeps a TCP connection to every `--peers` address
//! (reconnecting every few seconds when it drops) and accepts connections
//! on the TCP listen port, so a test can see that the nodes' shared
//! segment carries traffic. It routes no overlay packets.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// Each static peer and whether it is connected.
#[derive(Debug, Default)]
pub struct Peers {
    states: Vec<(SocketAddr, bool)>,
    inbound: Vec<SocketAddr>,
}

impl Peers {
    /// mycelium's peer list shape.
    pub fn to_json(&self) -> Value {
        let mut list: Vec<Value> = self
            .states
            .iter()
            .map(|(address, alive)| {
                json!({
                    "endpoint": { "proto": "tcp", "socketAddr": address.to_string() },
                    "type": "static",
                    "connectionState": if *alive { "alive" } else { "connecting" },
                })
            })
            .collect();
        list.extend(self.inbound.iter().map(|address| {
            json!({
                "endpoint": { "proto": "tcp", "socketAddr": address.to_string() },
                "type": "inbound",
                "connectionState": "alive",
            })
        }));
        Value::Array(list)
    }

    fn set(&mut self, address: SocketAddr, alive: bool) {
        match self.states.iter_mut().find(|(a, _)| *a == address) {
            Some(state) => state.1 = alive,
            None => self.states.push((address, alive)),
        }
    }
}

/// Starts one thread per static peer and one accepting inbound peers.
pub fn start(peers: &Arc<Mutex<Peers>>, statics: &[SocketAddr], listen_port: u16) {
    for address in statics {
        if let Ok(mut p) = peers.lock() {
            p.set(*address, false);
        }
        let (peers, address) = (peers.clone(), *address);
        std::thread::spawn(move || loop {
            if let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(3)) {
                println!("connected to peer {address}");
                if let Ok(mut p) = peers.lock() {
                    p.set(address, true);
                }
                // Blocks until the peer goes away.
                let _ = stream.read(&mut [0u8; 64]);
                println!("peer {address} went away");
                if let Ok(mut p) = peers.lock() {
                    p.set(address, false);
                }
            }
            std::thread::sleep(Duration::from_secs(2));
        });
    }
    match TcpListener::bind(("0.0.0.0", listen_port)) {
        Ok(listener) => {
            let peers = peers.clone();
            std::thread::spawn(move || {
                // Held open so the peer sees a live connection.
                let mut held = Vec::new();
                for (stream, from) in listener.incoming().flatten().filter_map(|s| {
                    let from = s.peer_addr().ok()?;
                    Some((s, from))
                }) {
                    println!("inbound peer {from}");
                    if let Ok(mut p) = peers.lock() {
                        p.inbound.push(from);
                    }
                    held.push(stream);
                }
            });
        }
        Err(error) => eprintln!("tcp listen port {listen_port}: {error}"),
    }
}
