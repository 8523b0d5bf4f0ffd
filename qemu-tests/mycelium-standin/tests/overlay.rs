//! The stand-in carries the overlay: three daemons, each in a network
//! namespace of its own (`--standin-netns`) with its TUN, in a chain
//! A—B—C over TCP on the host's loopback. A program on A reaches C's
//! 400::/7 address through B; the kernel on each side sees what it would
//! see with mycelium: a TCP connection that works, a hop limit that drops
//! by one per overlay hop, and an error at once (an ICMPv6 error the
//! kernel accepted, so its checksum is right): "network unreachable" for an
//! address nobody holds and for C once B, the only way there, is gone;
//! "no route to host" for an unused address of its own /64.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{address_of, free_port};

struct Daemon {
    child: Child,
    address: Ipv6Addr,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in with key `seed`, peering with `peers` (host ports).
fn daemon(dir: &Path, seed: u8, peers: &[u16]) -> Daemon {
    let key = dir.join(format!("key{seed}"));
    std::fs::write(&key, [seed; 32]).unwrap();
    let port = free_port();
    let mut args: Vec<String> = vec!["--standin-netns".into(), "--disable-quic".into()];
    if !peers.is_empty() {
        args.push("--peers".into());
        args.extend(peers.iter().map(|p| format!("tcp://127.0.0.1:{p}")));
    }
    args.extend(
        [
            "-k",
            &key.display().to_string(),
            "-t",
            &port.to_string(),
            "--tun-name",
            "myc",
        ]
        .map(str::to_owned),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_mycelium"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its namespace is its own once it has left the test's.
    let (ours, its) = (
        std::fs::read_link("/proc/self/ns/net").unwrap(),
        format!("/proc/{}/ns/net", child.id()),
    );
    let start = Instant::now();
    while std::fs::read_link(&its).ok().as_ref() == Some(&ours) {
        assert!(start.elapsed() < Duration::from_secs(10), "still in ours");
        std::thread::sleep(Duration::from_millis(10));
    }
    Daemon {
        child,
        address: address_of([seed; 32]),
        port,
    }
}

/// Runs `work` on a thread inside `daemon`'s network namespace.
fn inside<T: Send + 'static>(daemon: &Daemon, work: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/proc/{}/ns/net", daemon.child.id());
    std::thread::spawn(move || {
        let ns = std::fs::File::open(path).unwrap();
        // SAFETY: setns(2) on an open namespace file, this thread only.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        work()
    })
    .join()
    .unwrap()
}

/// Connects to `to` from inside `from`, retrying until `limit` while the
/// routes converge; the last result.
fn connect(from: &Daemon, to: SocketAddr, limit: Duration) -> std::io::Result<TcpStream> {
    inside(from, move || {
        let start = Instant::now();
        loop {
            let result = TcpStream::connect_timeout(&to, Duration::from_secs(2));
            if result.is_ok() || start.elapsed() > limit {
                return result;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

fn wait_for_tun(daemon: &Daemon) {
    let address = daemon.address;
    inside(daemon, move || {
        let start = Instant::now();
        while UdpSocket::bind((address, 0)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "no TUN address");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

#[test]
fn packets_cross_two_hops_and_errors_come_back_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = daemon(dir.path(), 3, &[]);
    let b = daemon(dir.path(), 2, &[c.port]);
    let mut a = daemon(dir.path(), 1, &[b.port]);
    for d in [&a, &b, &c] {
        wait_for_tun(d);
    }

    // A TCP service on C's overlay address, echoing one line.
    let c_address = c.address;
    let listener = inside(&c, move || TcpListener::bind((c_address, 7000)).unwrap());
    let echo = std::thread::spawn(move || {
        let (mut stream, from) = listener.accept().unwrap();
        let mut line = [0u8; 5];
        stream.read_exact(&mut line).unwrap();
        stream.write_all(&line).unwrap();
        from
    });
    let to_c = SocketAddr::from((c.address, 7000));
    let mut stream = connect(&a, to_c, Duration::from_secs(15)).unwrap();
    stream.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
    assert_eq!(echo.join().unwrap().ip(), std::net::IpAddr::V6(a.address));

    // Two overlay hops: sent with hop limit 3 a datagram arrives, with 2
    // it does not (the kernel's own hop limit on the socket).
    let receiver = inside(&c, move || {
        let socket = UdpSocket::bind((c_address, 7001)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        socket
    });
    let (a_address, to) = (a.address, SocketAddr::from((c.address, 7001)));
    let send = move |hops: u32, payload: &'static [u8]| {
        let socket = UdpSocket::bind((a_address, 0)).unwrap();
        let hops = hops as libc::c_int;
        // SAFETY: setsockopt with an int option value.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_UNICAST_HOPS,
                (&hops as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        socket.send_to(payload, to).unwrap();
    };
    inside(&a, move || send(2, b"two"));
    inside(&a, move || send(3, b"three"));
    let mut buffer = [0u8; 16];
    let (n, _) = receiver.recv_from(&mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"three", "hop limit 2 must die on the way");

    // Nobody holds this address: refused at once, not timed out.
    let started = Instant::now();
    let nowhere = SocketAddr::from(("4ff:dead:beef::1".parse::<Ipv6Addr>().unwrap(), 7000));
    let error = connect(&a, nowhere, Duration::ZERO).unwrap_err();
    // ICMPv6 "no route to destination", which Linux reports as ENETUNREACH.
    assert_eq!(error.raw_os_error(), Some(libc::ENETUNREACH), "{error}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // An unused address of A's own /64: "address unreachable"
    // (EHOSTUNREACH).
    let mut own = a.address.octets();
    own[15] ^= 0xff;
    let own = SocketAddr::from((Ipv6Addr::from(own), 7000));
    let error = connect(&a, own, Duration::ZERO).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EHOSTUNREACH), "{error}");

    // B goes: C is out of reach from A, and A hears so at once.
    drop(b);
    let start = Instant::now();
    loop {
        match connect(&a, to_c, Duration::ZERO) {
            Err(error) if error.raw_os_error() == Some(libc::ENETUNREACH) => break,
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "C is still routed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(a.child.try_wait().unwrap().is_none(), "A keeps running");
}
