//! A stand-in for the mycelium daemon (myceliumd v0.7.10) for tests, where
//! no real mycelium can be fetched. It takes mycelium's flags, keeps its
//! X25519 key in the key file, creates its TUN with the 400::/7 address
//! derived from that key (when it can), serves the admin API nodes use and
//! holds TCP connections to its peers. It routes no overlay traffic. A real
//! image gets the real daemon by giving its path to spore-mkinitramfs in
//! place of this one: the service file does not change.

mod api;
mod args;
mod identity;
mod peers;
mod tun;

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

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
    let secret = match identity::load_or_create(&args.key_file) {
        Ok(secret) => secret,
        Err(error) => {
            eprintln!("error: key file {}: {error}", args.key_file.display());
            return ExitCode::from(1);
        }
    };
    let identity = identity::Identity::from_secret(secret);
    println!("Node address: {}", identity.address);
    println!("Node subnet: {}", identity.subnet());
    println!("Node pubkey: {}", identity.public_hex());
    let _tun = if args.no_tun {
        None
    } else {
        match tun::create(&args.tun_name, identity.address) {
            Ok(fd) => {
                println!("TUN {} up with {}/7", args.tun_name, identity.address);
                Some(fd)
            }
            Err(error) => {
                eprintln!("TUN {}: {error}; running without it", args.tun_name);
                None
            }
        }
    };
    let peers = Arc::new(Mutex::new(peers::Peers::default()));
    peers::start(&peers, &args.peers, args.tcp_listen_port);
    let listener = match TcpListener::bind(args.api_addr) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: API address {}: {error}", args.api_addr);
            return ExitCode::from(1);
        }
    };
    println!("API listening on {}", args.api_addr);
    let api = api::Api {
        identity,
        start_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        peers,
    };
    std::thread::spawn(move || api.serve(listener));
    let mut signal = 0;
    // SAFETY: sigwait with the blocked set and a local out-parameter.
    unsafe { libc::sigwait(&set, &mut signal) };
    println!("signal {signal}: shutting down");
    ExitCode::SUCCESS
}
