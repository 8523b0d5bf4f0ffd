//! The TUN device: created with TUNSETIFF on /dev/net/tun, MTU 1400, up,
//! with the overlay address at prefix /7, as mycelium sets it up (no `ip`
//! tool: netdevice(7) ioctls).

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// linux/if_tun.h
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// linux/ipv6.h `struct in6_ifreq`.
#[repr(C)]
struct In6Ifreq {
    addr: libc::in6_addr,
    prefixlen: u32,
    ifindex: libc::c_int,
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn socket(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(fd)?;
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name `{name}`"),
        ));
    }
    for (slot, byte) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *slot = *byte as libc::c_char;
    }
    Ok(req)
}

fn ioctl<T>(fd: &OwnedFd, request: libc::c_ulong, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is the structure `request` expects.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg as *mut T) })
}

/// Brings interface `name` up.
pub fn up(name: &str) -> io::Result<()> {
    let control = socket(libc::AF_INET)?;
    let mut req = ifreq(name)?;
    ioctl(&control, libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    ioctl(&control, libc::SIOCSIFFLAGS, &mut req)
}

/// Creates TUN `name`, sets MTU 1400, brings it up and adds `address/7`.
/// The returned descriptor keeps the device alive.
pub fn create(name: &str, address: Ipv6Addr) -> io::Result<OwnedFd> {
    // SAFETY: open(2) with a constant path.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    check(fd)?;
    // SAFETY: a fresh descriptor nobody else owns.
    let tun = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_flags = IFF_TUN | IFF_NO_PI;
    ioctl(&tun, TUNSETIFF, &mut req)?;

    let control = socket(libc::AF_INET)?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = 1400;
    ioctl(&control, libc::SIOCSIFMTU, &mut req)?;
    up(name)?;
    let mut req = ifreq(name)?;
    ioctl(&control, libc::SIOCGIFINDEX, &mut req)?;
    // SAFETY: SIOCGIFINDEX filled the index member.
    let ifindex = unsafe { req.ifr_ifru.ifru_ifindex };

    let control6 = socket(libc::AF_INET6)?;
    let mut request = In6Ifreq {
        addr: libc::in6_addr {
            s6_addr: address.octets(),
        },
        prefixlen: 7,
        ifindex,
    };
    ioctl(&control6, libc::SIOCSIFADDR, &mut request)?;
    Ok(tun)
}
