//! Peers: the stand-in keeps a TCP connection to every `--peers` address
//! (reconnecting every few seconds when it drops) and accepts connections
//! on the TCP listen port; each connection is a link of the overlay
//! ([`crate::net`]).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::net::Net;
use crate::netns::Outside;
use crate::peer_stats::State;

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
