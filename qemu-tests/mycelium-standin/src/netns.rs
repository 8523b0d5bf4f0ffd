//! `--standin-netns` (the stand-in's own flag, not mycelium's): the daemon
//! moves into a network namespace of its own at start (its TUN, its
//! loopback and its APIs there) while its peer connections stay in the
//! namespace it was started in. A test puts an operator on the overlay
//! that way (sporectl and a beacon run in that namespace) without adding a
//! route or an address to the host.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The namespace the daemon was started in.
pub struct Outside(OwnedFd);

/// Moves the calling thread (and the threads it starts later) into a new
/// network namespace with its loopback up; returns the one it left.
pub fn enter_own() -> io::Result<Outside> {
    // SAFETY: open(2) with a constant path.
    let fd = unsafe {
        libc::open(
            c"/proc/self/ns/net".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let outside = Outside(unsafe { OwnedFd::from_raw_fd(fd) });
    // SAFETY: unshare(2) with a constant flag.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    crate::tun::up("lo")?;
    Ok(outside)
}

impl Outside {
    /// Moves the calling thread back to the namespace the daemon was
    /// started in (for its peer sockets).
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: setns(2) on a namespace descriptor this value owns.
        if unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
