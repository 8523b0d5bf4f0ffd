//! The node's clock, from the NTP servers of spore.toml's `[time]`: an
//! SNTP client built in, as call-home is (no shell, no daemon). At boot,
//! before any service (so before call-home, whose registration the beacon
//! refuses from a clock more than 300 s off), PID 1 asks the servers and
//! steps the clock; afterwards a thread of its own asks again every
//! `poll_s` and slews small differences away (adjtime), stepping only
//! large ones. Nothing here runs without `[time] servers`.

pub mod packet;

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, SystemTime};

use runtime::journal;

use crate::config::Time;

/// How long one server is waited for.
pub const WAIT: Duration = Duration::from_millis(1500);

/// Differences up to this are slewed; larger ones stepped.
pub const STEP_ABOVE: Duration = Duration::from_millis(500);

/// Why a server gave no usable time.
#[derive(Debug, thiserror::Error)]
pub enum SntpError {
    /// The name did not resolve, or to nothing.
    #[error("{server}: cannot resolve: {reason}")]
    Resolve {
        /// The server as configured.
        server: String,
        /// Why.
        reason: String,
    },
    /// The socket failed, or no answer came in time.
    #[error("{server}: {error}")]
    Io {
        /// The server.
        server: String,
        /// What the system said.
        error: std::io::Error,
    },
    /// An answer that is not one.
    #[error("{server}: {error}")]
    Reply {
        /// The server.
        server: String,
        /// What is wrong with it.
        error: packet::PacketError,
    },
}

/// One server's time, measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The server as configured.
    pub server: String,
    /// Its stratum.
    pub stratum: u8,
    /// Offset and delay.
    pub sample: packet::Sample,
}

/// `server` with NTP's port when it names none.
fn address(server: &str) -> Result<SocketAddr, SntpError> {
    let with_port = if server.parse::<SocketAddr>().is_ok()
        || server
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.contains(':') && port.parse::<u16>().is_ok())
    {
        server.to_owned()
    } else if server.contains(':') {
        format!("[{server}]:123")
    } else {
        format!("{server}:123")
    };
    let fail = |reason: String| SntpError::Resolve {
        server: server.to_owned(),
        reason,
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail("no address".into()))
}

/// One SNTP exchange with `server`, waiting at most `wait` for its answer.
pub fn query(server: &str, wait: Duration) -> Result<Measured, SntpError> {
    let io = |error| SntpError::Io {
        server: server.to_owned(),
        error,
    };
    let target = address(server)?;
    let local: SocketAddr = if target.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(local).map_err(io)?;
    socket.connect(target).map_err(io)?;
    socket.set_read_timeout(Some(wait)).map_err(io)?;
    let sent = packet::timestamp(SystemTime::now());
    socket.send(&packet::request(sent)).map_err(io)?;
    let mut buffer = [0u8; 512];
    // Datagrams that are not the answer (a late one to an earlier
    // request) are skipped until the wait is over.
    let deadline = std::time::Instant::now() + wait;
    loop {
        let received = socket.recv(&mut buffer).map_err(io)?;
        let arrived = packet::timestamp(SystemTime::now());
        match packet::parse(buffer.get(..received).unwrap_or_default(), sent) {
            Ok(reply) => {
                return Ok(Measured {
                    server: server.to_owned(),
                    stratum: reply.stratum,
                    sample: packet::sample(sent, &reply, arrived),
                })
            }
            Err(packet::PacketError::Origin) if std::time::Instant::now() < deadline => {}
            Err(error) => {
                return Err(SntpError::Reply {
                    server: server.to_owned(),
                    error,
                })
            }
        }
    }
}

/// The first server of `servers` that answers, in order; each failure logged.
fn first_answer(servers: &[String], quiet: bool) -> Option<Measured> {
    for server in servers {
        match query(server, WAIT) {
            Ok(measured) => return Some(measured),
            Err(error) if !quiet => journal::note(format_args!("time: {error}")),
            Err(_) => {}
        }
    }
    None
}

/// Moves the clock by `offset_nanos`: stepped when `step` or when it is more
/// than [`STEP_ABOVE`], else slewed. The words for the log.
fn correct(offset_nanos: i128, step: bool) -> Result<&'static str, std::io::Error> {
    let (size, forward) = packet::magnitude(offset_nanos);
    if step || size > STEP_ABOVE {
        let now = SystemTime::now();
        let target = if forward {
            now.checked_add(size)
        } else {
            now.checked_sub(size)
        }
        .ok_or_else(|| std::io::Error::other("out of range"))?;
        let since = target
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| std::io::Error::other("before 1970"))?;
        let spec = libc::timespec {
            tv_sec: since
                .as_secs()
                .try_into()
                .map_err(|_| std::io::Error::other("out of range"))?,
            tv_nsec: libc::c_long::from(since.subsec_nanos()),
        };
        // SAFETY: clock_settime reads the timespec it is given.
        if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &spec) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        return Ok("stepped");
    }
    let micros = i64::try_from(offset_nanos / 1_000).unwrap_or(0);
    let delta = libc::timeval {
        tv_sec: micros / 1_000_000,
        tv_usec: micros % 1_000_000,
    };
    // SAFETY: adjtime reads the timeval it is given; the old delta is not asked for.
    if unsafe { libc::adjtime(&delta, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok("slewing")
}

/// The offset as people read it: `+186,000,000.123 s`, `-0.004 s`.
fn shown(offset_nanos: i128) -> String {
    let (size, forward) = packet::magnitude(offset_nanos);
    format!(
        "{}{}.{:03} s",
        if forward { "+" } else { "-" },
        journal::thousands(size.as_secs()),
        size.subsec_millis()
    )
}

/// At boot, as PID 1: set the clock from the first server that answers,
/// then keep it in step on a thread of its own.
pub fn at_boot(time: &Time) {
    if time.servers.is_empty() {
        return;
    }
    match first_answer(&time.servers, false) {
        Some(measured) => {
            let offset = measured.sample.offset_nanos;
            match correct(offset, true) {
                Ok(_) => journal::note(format_args!(
                    "time: clock set from {} (stratum {}): it was {} off, {} ms round trip",
                    measured.server,
                    measured.stratum,
                    shown(offset),
                    measured.sample.delay_nanos / 1_000_000
                )),
                Err(error) => journal::note(format_args!("time: cannot set the clock: {error}")),
            }
        }
        None => journal::note(format_args!(
            "time: no server of [time] answered; the clock stays as the hardware set it ({})",
            journal::timestamp(SystemTime::now())
        )),
    }
    let servers = time.servers.clone();
    let poll = Duration::from_secs(time.poll_s.max(16));
    let started = std::thread::Builder::new()
        .name("spore-time".into())
        .spawn(move || keep_in_step(&servers, poll));
    if let Err(error) = started {
        journal::note(format_args!(
            "time: no thread to keep the clock in step: {error}"
        ));
    }
}

/// Every `poll`, ask again and correct; a server that stops answering is
/// said once, and again when one answers.
fn keep_in_step(servers: &[String], poll: Duration) {
    let mut answering = true;
    loop {
        std::thread::sleep(poll);
        match first_answer(servers, true) {
            Some(measured) => {
                if !answering {
                    journal::note(format_args!("time: {} answers again", measured.server));
                }
                answering = true;
                let offset = measured.sample.offset_nanos;
                match correct(offset, false) {
                    Ok("stepped") => journal::note(format_args!(
                        "time: clock stepped by {} from {}",
                        shown(offset),
                        measured.server
                    )),
                    Ok(_) => {}
                    Err(error) => {
                        journal::note(format_args!("time: cannot correct the clock: {error}"))
                    }
                }
            }
            None if answering => {
                answering = false;
                journal::note("time: no server of [time] answers; the clock runs on its own");
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_get_ntps_port_unless_they_name_one() {
        assert_eq!(
            address("127.0.0.1").unwrap(),
            "127.0.0.1:123".parse().unwrap()
        );
        assert_eq!(
            address("127.0.0.1:11123").unwrap(),
            "127.0.0.1:11123".parse().unwrap()
        );
        assert_eq!(address("::1").unwrap(), "[::1]:123".parse().unwrap());
        assert_eq!(address("[::1]:5").unwrap(), "[::1]:5".parse().unwrap());
        assert!(matches!(
            address("no such host.invalid"),
            Err(SntpError::Resolve { .. })
        ));
    }

    /// A real chronyd on a loopback port, serving the host's own clock at
    /// stratum 8 and never setting it (-x); killed when dropped.
    struct Chronyd {
        child: std::process::Child,
        port: u16,
        /// Its configuration, kept until it is gone.
        _dir: tempfile::TempDir,
    }

    impl Drop for Chronyd {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn chronyd() -> Chronyd {
        let dir = tempfile::tempdir().unwrap();
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.path().join("chrony.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbindaddress 127.0.0.1\nallow all\nlocal stratum 8\ncmdport 0\npidfile {}\n",
                dir.path().join("pid").display()
            ),
        )
        .unwrap();
        let mut command = std::process::Command::new("/usr/sbin/chronyd");
        command.args(["-d", "-x", "-U"]);
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } == 0 {
            command.args(["-u", "root"]);
        }
        let child = command
            .arg("-f")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chronyd (scripts/setup installs chrony)");
        Chronyd {
            child,
            port,
            _dir: dir,
        }
    }

    #[test]
    fn a_real_ntp_server_gives_our_own_clock_back() {
        let server = chronyd();
        let address = format!("127.0.0.1:{}", server.port);
        let mut answer = None;
        for _ in 0..50 {
            // Refused until chronyd has bound its port.
            match query(&address, Duration::from_millis(200)) {
                Ok(measured) => {
                    answer = Some(measured);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let measured = answer.expect("chronyd answered");
        assert_eq!(measured.stratum, 8);
        // The same clock on both ends: no offset to speak of, a loopback
        // round trip.
        assert!(
            measured.sample.offset_nanos.abs() < 50_000_000,
            "{measured:?}"
        );
        assert!(
            (0..50_000_000).contains(&measured.sample.delay_nanos),
            "{measured:?}"
        );
        // Nothing listens on the next port: no answer within the wait.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let nobody = silent.local_addr().unwrap().to_string();
        assert!(matches!(
            query(&nobody, Duration::from_millis(100)),
            Err(SntpError::Io { .. })
        ));
    }

    #[test]
    fn offsets_read_as_people_write_them() {
        assert_eq!(shown(186_000_000_123_000_000), "+186,000,000.123 s");
        assert_eq!(shown(-4_000_000), "-0.004 s");
    }
}
