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

/// What is known of the node's clock, for `node.info`.
#[derive(Debug, Clone)]
struct Status {
    /// `ntp` (a server of [time] answered) or `beacon` (none did, and the
    /// beacon's Date header was read).
    source: &'static str,
    /// The server or beacon asked.
    from: String,
    /// How far the clock was behind it when asked (positive: behind).
    off_by_ms: i128,
    /// When it was asked.
    at: SystemTime,
}

impl Status {
    /// What a server of [time] said, now.
    fn ntp(measured: &Measured) -> Self {
        Self {
            source: "ntp",
            from: measured.server.clone(),
            off_by_ms: measured.sample.offset_nanos / 1_000_000,
            at: SystemTime::now(),
        }
    }
}

fn status() -> &'static std::sync::Mutex<Option<Status>> {
    static STATUS: std::sync::OnceLock<std::sync::Mutex<Option<Status>>> =
        std::sync::OnceLock::new();
    STATUS.get_or_init(|| std::sync::Mutex::new(None))
}

fn record(update: Status) {
    if let Ok(mut known) = status().lock() {
        *known = Some(update);
    }
}

/// How far a clock may be off the beacon's before `node.info` warns: the
/// beacon refuses registrations 300 s off.
const WARN_BEYOND_MS: i128 = 60_000;

/// The clock as `node.info` shows it: where its time was last compared,
/// how far off it was then, and a warning when that is far enough to
/// matter; null before anything was asked.
pub fn status_json() -> serde_json::Value {
    let known = status().lock().ok().and_then(|s| s.clone());
    let Some(known) = known else {
        return serde_json::Value::Null;
    };
    let off_by_s = known.off_by_ms / 1000;
    let mut value = serde_json::json!({
        "source": known.source,
        "from": known.from,
        "off_by_s": i64::try_from(off_by_s).unwrap_or(i64::MAX),
        "checked": journal::timestamp(known.at),
    });
    if known.source == "beacon" && known.off_by_ms.abs() > WARN_BEYOND_MS {
        if let serde_json::Value::Object(map) = &mut value {
            map.insert(
                "warning".into(),
                serde_json::json!(format!(
                    "the clock is {} s {} the beacon's and no NTP server answers: set [time] servers (registrations are refused beyond 300 s)",
                    off_by_s.abs(),
                    if off_by_s > 0 { "behind" } else { "ahead of" }
                )),
            );
        }
    }
    value
}

/// The beacon's time from its Date header, when no NTP server answers.
fn beacon_time(beacon: &[String], ca_file: Option<&std::path::Path>) -> Option<Status> {
    for url in beacon {
        match rpc::http::server_date(url, ca_file) {
            Ok((theirs, ours)) => {
                let millis = |t: SystemTime| i128::from(svc::timespan::unix_millis(t));
                let off_by_ms = millis(theirs) - millis(ours);
                return Some(Status {
                    source: "beacon",
                    from: url.clone(),
                    off_by_ms,
                    at: ours,
                });
            }
            Err(error) => journal::note(format_args!("time: the beacon's date at {url}: {error}")),
        }
    }
    None
}

/// What the clock is compared with: the NTP servers of [time], and when
/// none answers the beacon (its URLs and CA).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// [time] servers.
    pub servers: Vec<String>,
    /// Seconds between checks.
    pub poll_s: u64,
    /// [beacon] url, as call-home posts to it.
    pub beacon: Vec<String>,
    /// [beacon] ca_file.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Sources {
    /// What spore.toml names: [time] and [beacon].
    pub fn of(config: &crate::config::NodeConfig) -> Self {
        Self {
            servers: config.time.servers.clone(),
            poll_s: config.time.poll_s,
            beacon: config
                .beacon
                .url
                .iter()
                .map(|url| rpc::callhome::registration_url(url))
                .collect(),
            ca_file: config.beacon.ca_file.clone(),
        }
    }
}

/// Starts keeping track of the clock. As PID 1 (`set_clock`): set it now
/// from the first server that answers, and keep it in step on a thread of
/// its own. Otherwise (`spore run`, where the clock is not spore's) only
/// measure it. Either way, when no server answers, the beacon's Date
/// header says how far off the clock is, for `node.info`.
pub fn start(sources: Sources, set_clock: bool) {
    if sources.servers.is_empty() && sources.beacon.is_empty() {
        return;
    }
    let mut answered = false;
    if set_clock && !sources.servers.is_empty() {
        match first_answer(&sources.servers, false) {
            Some(measured) => {
                answered = true;
                let offset = measured.sample.offset_nanos;
                record(Status::ntp(&measured));
                match correct(offset, true) {
                    Ok(_) => journal::note(format_args!(
                        "time: clock set from {} (stratum {}): it was {} off, {} ms round trip",
                        measured.server,
                        measured.stratum,
                        shown(offset),
                        measured.sample.delay_nanos / 1_000_000
                    )),
                    Err(error) => {
                        journal::note(format_args!("time: cannot set the clock: {error}"))
                    }
                }
            }
            None => journal::note(format_args!(
                "time: no server of [time] answered; the clock stays as the hardware set it ({})",
                journal::timestamp(SystemTime::now())
            )),
        }
    }
    let started = std::thread::Builder::new()
        .name("spore-time".into())
        .spawn(move || {
            crate::fault::point("time");
            keep_in_step(&sources, set_clock, answered)
        });
    if let Err(error) = started {
        journal::note(format_args!(
            "time: no thread to keep the clock in step: {error}"
        ));
    }
}

/// Every `poll_s` (at once when nothing was measured yet), ask again and
/// correct (when the clock is ours); a server that stops answering is said
/// once, and again when one answers; without an answer, the beacon's date.
fn keep_in_step(sources: &Sources, set_clock: bool, measured_now: bool) {
    let poll = Duration::from_secs(sources.poll_s.max(16));
    let mut answering = true;
    let mut first = !measured_now;
    loop {
        if !first {
            std::thread::sleep(poll);
        }
        first = false;
        match first_answer(&sources.servers, true) {
            Some(measured) => {
                if !answering {
                    journal::note(format_args!("time: {} answers again", measured.server));
                }
                answering = true;
                let offset = measured.sample.offset_nanos;
                record(Status::ntp(&measured));
                if !set_clock {
                    continue;
                }
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
            None => {
                if answering && !sources.servers.is_empty() {
                    journal::note("time: no server of [time] answers; the clock runs on its own");
                }
                answering = false;
                if let Some(beacon) = beacon_time(&sources.beacon, sources.ca_file.as_deref()) {
                    if beacon.off_by_ms.abs() > WARN_BEYOND_MS {
                        journal::note(format_args!(
                            "time: the clock is {} s off the beacon's (its Date header); set [time] servers",
                            beacon.off_by_ms / 1000
                        ));
                    }
                    record(beacon);
                }
            }
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
    fn a_clock_far_from_the_beacons_is_warned_about_in_node_info() {
        record(Status {
            source: "beacon",
            from: "https://beacon:8443/api/v1/nodes/register".into(),
            off_by_ms: 218_301_527_004,
            at: SystemTime::now(),
        });
        let shown = status_json();
        assert_eq!(shown["off_by_s"], 218_301_527);
        let warning = shown["warning"].as_str().unwrap();
        assert!(
            warning.starts_with("the clock is 218301527 s behind the beacon's"),
            "{warning}"
        );
        record(Status {
            off_by_ms: -2_000,
            ..Status {
                source: "beacon",
                from: String::new(),
                off_by_ms: 0,
                at: SystemTime::now(),
            }
        });
        assert!(status_json().get("warning").is_none());
    }

    #[test]
    fn offsets_read_as_people_write_them() {
        assert_eq!(shown(186_000_000_123_000_000), "+186,000,000.123 s");
        assert_eq!(shown(-4_000_000), "-0.004 s");
    }
}
