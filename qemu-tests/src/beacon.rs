//! A beacon on the host (`sporectl beacon serve`), which the guests reach at
//! 10.0.2.2 through QEMU's user network, or, for a fleet on the overlay, in
//! the operator's overlay namespace at its 400::/7 address.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::overlay::Overlay;

use serde_json::Value;

/// A running beacon; killed when dropped.
pub struct Beacon {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The operator's overlay it runs in, if any.
    overlay: Option<Arc<Overlay>>,
}

impl Beacon {
    /// Starts `sporectl beacon serve` on 127.0.0.1:`port` (on `[::]` in
    /// `overlay`'s namespace, when given) with data in `data`, listing
    /// nodes enrolled by a credential of `enrollment_ca`; `extra` are
    /// more of `beacon serve`'s options.
    pub fn start(
        sporectl: &Path,
        port: u16,
        data: &Path,
        log: &Path,
        enrollment_ca: &Path,
        overlay: Option<Arc<Overlay>>,
        extra: &[&std::ffi::OsStr],
    ) -> Result<Beacon, String> {
        let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let listen = match overlay {
            Some(_) => format!("[::]:{port}"),
            None => format!("127.0.0.1:{port}"),
        };
        let mut command = Command::new(sporectl);
        if let Some(overlay) = &overlay {
            overlay.enter(&mut command);
        }
        let child = command
            .args(["beacon", "serve", "--listen", &listen, "--data"])
            .arg(data)
            .arg("--enrollment-ca")
            .arg(enrollment_ca)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("sporectl beacon serve: {e}"))?;
        let beacon = Beacon {
            child,
            port,
            overlay,
        };
        let start = Instant::now();
        while beacon.connect().is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err("the beacon did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(beacon)
    }

    /// Its URL from the operator (on the host, or in the overlay's
    /// namespace).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its URL from a guest.
    pub fn guest_url(&self) -> String {
        match &self.overlay {
            Some(overlay) => format!("http://[{}]:{}", overlay.address, self.port),
            None => format!("http://10.0.2.2:{}", self.port),
        }
    }

    /// A connection to it, made where the operator is.
    fn connect(&self) -> Result<TcpStream, String> {
        let port = self.port;
        let connect = move || TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string());
        match &self.overlay {
            Some(overlay) => overlay.run(connect)?,
            None => connect(),
        }
    }

    /// `GET /api/v1/nodes`: every registration.
    pub fn nodes(&self) -> Result<Vec<Value>, String> {
        let mut stream = self.connect()?;
        write!(
            stream,
            "GET /api/v1/nodes HTTP/1.1\r\nHost: beacon\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| e.to_string())?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .ok_or("no HTTP body")?;
        serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))
    }

    /// `hostname`'s record once its registration is newer than `since`
    /// (a node that came back and registered again), within ten seconds.
    pub fn registered_after(&self, hostname: &str, since: u64) -> Option<serde_json::Value> {
        for _ in 0..50 {
            let record = self.node(hostname)?;
            let at = record
                .pointer("/registration/timestamp")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            if at > since {
                return Some(record);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        None
    }

    /// The registration of `hostname`, if any.
    pub fn node(&self, hostname: &str) -> Option<Value> {
        self.nodes()
            .ok()?
            .into_iter()
            .find(|n| n.pointer("/registration/hostname").and_then(Value::as_str) == Some(hostname))
    }
}

impl Drop for Beacon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
