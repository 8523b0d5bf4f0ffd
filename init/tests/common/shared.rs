//! What the integration tests and the benches both use, in one file each
//! includes (`#[path]`): bytes that do not compress, a free port, and a
//! connection from another loopback address (a flood from many sources on
//! one machine).

use std::net::TcpListener;

/// Bytes no compressor or pattern could make up: SHA-256 in counter mode.
pub fn noise(len: usize, seed: u8) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 0u64;
    while out.len() < len {
        let mut hasher = Sha256::new();
        hasher.update([seed]);
        hasher.update(counter.to_le_bytes());
        out.extend_from_slice(&hasher.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// A TCP connection to `to` from the address `from` (port chosen by the
/// kernel).
pub fn connect_from(
    from: std::net::Ipv4Addr,
    to: std::net::SocketAddr,
) -> std::io::Result<std::net::TcpStream> {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(from, 0)),
    )?;
    let std::net::SocketAddr::V4(to) = to else {
        return Err(std::io::Error::other("IPv4 only"));
    };
    connect(fd.as_raw_fd(), &SockaddrIn::from(to))?;
    Ok(std::net::TcpStream::from(fd))
}

/// A free port on loopback, never one this process was handed before:
/// the kernel may give a released port out again, and two nodes of the
/// tests that run at once, told the same port before either bound it,
/// would answer for each other (one node's key at another's address).
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static HANDED: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut handed = HANDED.lock().unwrap_or_else(|e| e.into_inner());
        if handed.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}
