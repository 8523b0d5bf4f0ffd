//! Binding an activated service's sockets, and the connections they give.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use smol::net::unix::UnixStream;
use smol::net::TcpStream;
use svc::service::Endpoint;

/// Connections a listening socket holds before they are accepted.
const BACKLOG: i32 = 1024;

/// A bound listening socket, registered with the event loop.
pub enum Listener {
    /// TCP.
    Tcp(smol::Async<std::net::TcpListener>),
    /// A Unix stream socket.
    Unix(smol::Async<std::os::unix::net::UnixListener>),
}

/// One connection, accepted or made.
#[derive(Clone)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix stream socket.
    Unix(UnixStream),
}

/// Where a connection came from: the address a bound is counted against
/// (a Unix peer is local: all of them count as one source).
pub type Source = Option<std::net::IpAddr>;

impl Listener {
    /// Binds `endpoint`: TCP with a deep backlog; a Unix socket after
    /// removing a stale one at its path (never another kind of file), its
    /// directory made, mode 0666 (who may connect is the service's call,
    /// as with systemd's default `SocketMode=`).
    pub fn bind(endpoint: &Endpoint) -> io::Result<Self> {
        match endpoint {
            Endpoint::Tcp(address) => {
                let listener = std::net::TcpListener::bind(address)?;
                deepen(&listener)?;
                Ok(Self::Tcp(smol::Async::new(listener)?))
            }
            Endpoint::Unix(path) => {
                clear_stale(path)?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let listener = std::os::unix::net::UnixListener::bind(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
                deepen(&listener)?;
                Ok(Self::Unix(smol::Async::new(listener)?))
            }
        }
    }

    /// A listener a live re-exec handed over for `endpoint`.
    pub fn adopt(endpoint: &Endpoint, fd: OwnedFd) -> io::Result<Self> {
        match endpoint {
            Endpoint::Tcp(_) => Ok(Self::Tcp(smol::Async::new(std::net::TcpListener::from(
                fd,
            ))?)),
            Endpoint::Unix(_) => Ok(Self::Unix(smol::Async::new(
                std::os::unix::net::UnixListener::from(fd),
            )?)),
        }
    }

    /// Its descriptor.
    pub fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        match self {
            Self::Tcp(l) => l.as_raw_fd(),
            Self::Unix(l) => l.as_raw_fd(),
        }
    }

    /// Waits until a connection is waiting (without taking it).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Self::Tcp(l) => l.readable().await,
            Self::Unix(l) => l.readable().await,
        }
    }

    /// Takes the next connection.
    pub async fn accept(&self) -> io::Result<(Stream, Source)> {
        match self {
            Self::Tcp(l) => {
                let (stream, peer) = l.read_with(|l| l.accept()).await?;
                Ok((Stream::Tcp(TcpStream::try_from(stream)?), Some(peer.ip())))
            }
            Self::Unix(l) => {
                let (stream, _) = l.read_with(|l| l.accept()).await?;
                Ok((Stream::Unix(UnixStream::try_from(stream)?), None))
            }
        }
    }

    /// A copy of its descriptor (close-on-exec), to hand to the service.
    pub fn duplicate(&self) -> io::Result<OwnedFd> {
        match self {
            Self::Tcp(l) => l.get_ref().as_fd().try_clone_to_owned(),
            Self::Unix(l) => l.get_ref().as_fd().try_clone_to_owned(),
        }
    }
}

impl Stream {
    /// Connects to a service's backend.
    pub async fn connect(endpoint: &Endpoint) -> io::Result<Self> {
        match endpoint {
            Endpoint::Tcp(address) => Ok(Self::Tcp(TcpStream::connect(address).await?)),
            Endpoint::Unix(path) => Ok(Self::Unix(UnixStream::connect(path).await?)),
        }
    }

    /// Reads into `buf`.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use smol::io::AsyncReadExt;
        match self {
            Self::Tcp(s) => s.read(buf).await,
            Self::Unix(s) => s.read(buf).await,
        }
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        use smol::io::AsyncWriteExt;
        match self {
            Self::Tcp(s) => s.write_all(buf).await,
            Self::Unix(s) => s.write_all(buf).await,
        }
    }

    /// No more will be written (the peer reads an end).
    pub fn finish(&self) {
        let _ = match self {
            Self::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Self::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

/// Raises a listener's backlog to [`BACKLOG`] (std listens with 128).
fn deepen(listener: &impl std::os::fd::AsRawFd) -> io::Result<()> {
    // SAFETY: listen(2) on a socket the caller owns; a listening socket
    // may be listened on again to change its backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes a Unix socket left at `path` by an earlier run; refuses any
/// other kind of file there.
fn clear_stale(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}
