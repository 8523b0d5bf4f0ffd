//! A real NTP server on the host for the guests: Debian's chronyd, on a
//! UDP port of loopback (a guest reaches it at 10.0.2.2:PORT through QEMU's
//! user network), serving its own clock at stratum 8 and never touching the
//! host's (`-x`). Killed when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running chronyd.
pub struct Chrony {
    child: Child,
    /// Its UDP port on 127.0.0.1.
    pub port: u16,
}

impl Chrony {
    /// Starts chronyd with its files in `dir`; waits until it answers.
    pub fn start(dir: &Path) -> Result<Chrony, String> {
        let port = free_udp_port()?;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let conf = dir.join("chrony.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbindaddress 127.0.0.1\nallow all\nlocal stratum 8\ncmdport 0\npidfile {}\ndriftfile {}\n",
                dir.join("chronyd.pid").display(),
                dir.join("drift").display()
            ),
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        let chronyd = ["/usr/sbin/chronyd", "/sbin/chronyd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("chronyd is not installed (scripts/setup installs the chrony package)")?;
        // Root keeps its privileges (chronyd would switch to _chrony, who
        // cannot write into this test's directory); anyone else runs as
        // themselves (-U).
        let root = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata("/proc/self").map_err(|e| e.to_string())?,
        ) == 0;
        let mut command = Command::new(chronyd);
        command.args(["-d", "-x", "-U"]);
        if root {
            command.args(["-u", "root"]);
        }
        let child = command
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("chronyd.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .map_err(|e| format!("{chronyd}: {e}"))?;
        let chrony = Chrony { child, port };
        chrony.wait_answering()?;
        Ok(chrony)
    }

    /// Asks it for the time (an SNTP client request) until it answers.
    fn wait_answering(&self) -> Result<(), String> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let mut request = [0u8; 48];
        request[0] = 0x23;
        request[40] = 1;
        let mut answer = [0u8; 128];
        for _ in 0..50 {
            let _ = socket.send_to(&request, ("127.0.0.1", self.port));
            if let Ok((n, _)) = socket.recv_from(&mut answer) {
                if n >= 48 {
                    return Ok(());
                }
            }
        }
        Err(format!("chronyd did not answer on 127.0.0.1:{}", self.port))
    }
}

impl Drop for Chrony {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> Result<u16, String> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
