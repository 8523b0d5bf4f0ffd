//! A stand-in for the mycelium daemon (myceliumd v0.7.10) for tests, where
//! no real mycelium can be fetched. It takes mycelium's flags, keeps its
//! X25519 key in the key file, creates its TUN with the 400::/7 address
//! derived from that key (when it can), serves the admin API nodes use and
//! holds TCP connections to its peers (listening on `[::]`, as the real
//! daemon does), over which it carries the overlay's packets between the
//! TUNs of the nodes, hop by hop ([`overlay`]). A real
//! image gets the real daemon by giving its path to spore-mkinitramfs in
//! place of this one: the service file does not change.

mod api;
mod args;
mod http;
mod identity;
mod jsonrpc;
mod link;
mod logfmt;
mod net;
mod netns;
mod overlay;
mod packet;
mod peer_stats;
mod peers;
mod tun;

use std::net::{TcpListener, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How long mycelium takes from start to serving its API on a TCG guest
/// (0.45 s on one node, measured with v0.7.10; ~1 s with five): the
/// stand-in is not ready sooner, so tests see the daemon's real start-up
/// order.
const START_UP: Duration = Duration::from_millis(450);

fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    // SIGTERM and SIGINT end it cleanly, as they end mycelium: blocked here
    // (before any thread starts) and taken with sigwait below.
    // SAFETY: plain signal-set calls on a local set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let outside = if args.own_netns {
        match netns::enter_own() {
            Ok(outside) => Some(Arc::new(outside)),
            Err(error) => {
                eprintln!("Error: cannot enter a network namespace of its own: {error:?}");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let secret = match identity::load_or_create(&args.key_file) {
        Ok(secret) => secret,
        Err(error) => {
            // mycelium returns the io::Error from main, which prints its
            // Debug: `Error: Os { code: 2, kind: NotFound, message: … }`.
            eprintln!("Error: {error:?}");
            return ExitCode::from(1);
        }
    };
    let identity = identity::Identity::from_secret(secret);
    logfmt::info(
        "mycelium",
        &format!("Node overlay IP: {}", identity.address),
        &[],
    );
    let tun = if args.no_tun {
        None
    } else {
        match tun::create(&args.tun_name, identity.address) {
            Ok(fd) => {
                logfmt::info(
                    "mycelium::tun::linux",
                    "Created TUN interface",
                    &[
                        ("name", args.tun_name.clone()),
                        ("address", format!("{}/7", identity.address)),
                    ],
                );
                Some(std::fs::File::from(fd))
            }
            Err(error) => {
                // mycelium cannot run without its TUN (unless --no-tun).
                logfmt::error(
                    "mycelium",
                    "Could not create tun device",
                    &[("err", error.to_string())],
                );
                eprintln!("Error: {error:?}");
                return ExitCode::from(1);
            }
        }
    };
    let _quic = if args.disable_quic {
        None
    } else {
        match UdpSocket::bind(("::", args.quic_listen_port)) {
            Ok(socket) => Some(socket),
            Err(error) => {
                eprintln!("Error: {error:?}");
                return ExitCode::from(1);
            }
        }
    };
    let net = net::Net::new(overlay::Overlay::new(identity.address), tun);
    peers::start(&net, &args.peers, args.tcp_listen_port, outside);
    {
        let net = net.clone();
        std::thread::spawn(move || net.run_tun());
    }
    std::thread::sleep(START_UP);
    let api = Arc::new(api::Api {
        identity,
        start_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        peers: net.peers.clone(),
    });
    let rest = match TcpListener::bind(args.api_addr) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("Error: {error:?}");
            return ExitCode::from(1);
        }
    };
    // mycelium unwraps the JSON-RPC bind: a port in use is a panic (101).
    let rpc = match TcpListener::bind(args.jsonrpc_addr) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "thread 'main' panicked at mycelium-api/src/rpc.rs:\nFailed to start JSON-RPC server on {}: {error}",
                args.jsonrpc_addr
            );
            return ExitCode::from(101);
        }
    };
    logfmt::info(
        "mycelium_api",
        "Started HTTP API server",
        &[("address", args.api_addr.to_string())],
    );
    logfmt::info(
        "mycelium_api::rpc",
        "Started JSON-RPC server",
        &[("address", args.jsonrpc_addr.to_string())],
    );
    {
        let api = api.clone();
        std::thread::spawn(move || jsonrpc::serve(api, rpc));
    }
    std::thread::spawn(move || api.serve(rest));
    let mut signal = 0;
    // SAFETY: sigwait with the blocked set and a local out-parameter.
    unsafe { libc::sigwait(&set, &mut signal) };
    logfmt::info("myceliumd", "Received shutdown signal, stopping", &[]);
    ExitCode::SUCCESS
}
