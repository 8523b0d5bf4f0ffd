//! The operator on the overlay: a mycelium stand-in on the host, in a
//! network namespace of its own (`--standin-netns`) so the host's routes
//! stay untouched, which the nodes peer with (`tcp://10.0.2.2:PORT`). The
//! operator's sporectl and the beacon run in that namespace: nodes call
//! home to the beacon's 400::/7 address and sporectl reaches each node at
//! the overlay address the beacon lists, as in a real fleet.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The operator's overlay daemon; killed when dropped.
#[derive(Debug)]
pub struct Overlay {
    /// The daemon (killed with this value).
    _child: Guard,
    namespace: File,
    /// Its overlay address.
    pub address: std::net::Ipv6Addr,
    /// Its peer port on the host's loopback (nodes reach 10.0.2.2:PORT).
    pub port: u16,
}

impl Overlay {
    /// Starts the stand-in at `mycelium` with its key and log in `dir`.
    pub fn start(mycelium: &Path, dir: &Path) -> Result<Overlay, String> {
        let port = crate::free_port();
        let log = dir.join("operator-mycelium.log");
        let stdout = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(mycelium)
            .args(["--standin-netns", "--disable-quic", "--tun-name", "myc-op"])
            .arg("-k")
            .arg(dir.join("operator-mycelium.key"))
            .args(["-t", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", mycelium.display()))?;
        // Killed when dropped: if it never comes up, or with the Overlay.
        let mut child = Guard(Some(child));
        let start = Instant::now();
        let address = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let address = text
                .lines()
                .find_map(|l| l.split("Node overlay IP: ").nth(1))
                .and_then(|rest| rest.trim_end_matches('"').parse().ok());
            if let (Some(address), true) = (address, text.contains("Started HTTP API server")) {
                break address;
            }
            if let Some(Ok(Some(status))) = child.0.as_mut().map(Child::try_wait) {
                return Err(format!("the operator's mycelium ended ({status}): {text}"));
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(format!("the operator's mycelium did not start: {text}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // It entered its namespace before it logged its address.
        let path = format!("/proc/{}/ns/net", child.0.as_ref().map_or(0, Child::id));
        let namespace = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        Ok(Overlay {
            _child: child,
            namespace,
            address,
            port,
        })
    }

    /// Makes `command` run in the overlay's namespace.
    pub fn enter(&self, command: &mut Command) {
        let fd = self.namespace.as_raw_fd();
        // SAFETY: setns(2) is async-signal-safe; `fd` stays open in the
        // child until exec (it is the parent's, inherited by fork).
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Runs `work` on a thread in the overlay's namespace.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T, String> {
        let fd = self.namespace.as_raw_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: setns(2) for this thread only, on a
                    // namespace file this value keeps open.
                    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } < 0 {
                        return Err(format!("setns: {}", std::io::Error::last_os_error()));
                    }
                    Ok(work())
                })
                .join()
                .map_err(|_| "a thread in the overlay's namespace panicked".to_owned())?
        })
    }
}

/// Kills the daemon it holds when dropped.
#[derive(Debug)]
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
