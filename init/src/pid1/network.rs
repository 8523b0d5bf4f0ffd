//! Loopback and a static IPv4 address with the classic interface ioctls
//! (netdevice(7)) and SIOCADDRT for the default route: no `ip` tool needed.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use runtime::journal;

use crate::config::Network;

/// Brings `lo` up (mycelium's API and the RPC listener live on it).
pub fn loopback_up() {
    if let Err(error) = Control::open().and_then(|c| c.set_up("lo")) {
        journal::note(format_args!("lo up: {error}"));
    }
}

/// Applies the static configuration in `net`.
pub fn configure(net: &Network) {
    let address = match net.address() {
        Ok(address) => address,
        Err(message) => {
            journal::note(message);
            return;
        }
    };
    let result = Control::open().and_then(|control| {
        if let Some((ip, prefix)) = address {
            control.set_address(&net.interface, ip, prefix)?;
        }
        control.set_up(&net.interface)?;
        if let Some(gateway) = net.gateway {
            control.add_default_route(gateway)?;
        }
        Ok(())
    });
    match result {
        Ok(()) => journal::note(format_args!(
            "{}: up{}{}",
            net.interface,
            net.address
                .as_deref()
                .map(|a| format!(" {a}"))
                .unwrap_or_default(),
            net.gateway.map(|g| format!(" via {g}")).unwrap_or_default()
        )),
        Err(error) => journal::note(format_args!("{}: {error}", net.interface)),
    }
}

/// The kernel's `struct rtentry` (route(4)); libc only has it for musl.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// A datagram socket to issue interface ioctls on.
struct Control {
    fd: OwnedFd,
}

impl Control {
    fn open() -> io::Result<Self> {
        // SAFETY: socket(2) with constant arguments; the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn request(name: &str) -> io::Result<libc::ifreq> {
        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= req.ifr_name.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name `{name}`"),
            ));
        }
        for (slot, byte) in req.ifr_name.iter_mut().zip(bytes) {
            *slot = *byte as libc::c_char;
        }
        Ok(req)
    }

    fn ioctl<T>(&self, request: libc::c_ulong, arg: &mut T) -> io::Result<()> {
        // SAFETY: `arg` is the structure `request` expects (ifreq/rtentry).
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), request as _, arg as *mut T) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn set_up(&self, name: &str) -> io::Result<()> {
        let mut req = Self::request(name)?;
        self.ioctl(libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        }
        self.ioctl(libc::SIOCSIFFLAGS, &mut req)
    }

    fn set_address(&self, name: &str, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut req = Self::request(name)?;
        req.ifr_ifru.ifru_addr = sockaddr_v4(ip);
        self.ioctl(libc::SIOCSIFADDR, &mut req)?;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let mut req = Self::request(name)?;
        req.ifr_ifru.ifru_netmask = sockaddr_v4(Ipv4Addr::from(mask));
        self.ioctl(libc::SIOCSIFNETMASK, &mut req)
    }

    fn add_default_route(&self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut route = RtEntry {
            rt_pad1: 0,
            rt_dst: sockaddr_v4(Ipv4Addr::UNSPECIFIED),
            rt_gateway: sockaddr_v4(gateway),
            rt_genmask: sockaddr_v4(Ipv4Addr::UNSPECIFIED),
            rt_flags: (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort,
            rt_pad2: 0,
            rt_pad3: 0,
            rt_pad4: std::ptr::null_mut(),
            rt_metric: 0,
            rt_dev: std::ptr::null_mut(),
            rt_mtu: 0,
            rt_window: 0,
            rt_irtt: 0,
        };
        match self.ioctl(libc::SIOCADDRT, &mut route) {
            Err(error) if error.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }
}

fn sockaddr_v4(ip: Ipv4Addr) -> libc::sockaddr {
    let v4 = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux; the
    // kernel reads the family first and interprets the rest accordingly.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(v4) }
}
