//! call-home: read mycelium's address from its API, sign a registration
//! with the node key, POST it to the beacon; retry with backoff and jitter
//! until accepted; then re-register every heartbeat (which also reports a
//! changed mycelium address). Runs as its own process (`spore call-home`),
//! so plain blocking I/O is fine here.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::{OsRng, RngCore};
use serde_json::Value;

use crate::nodekey::NodeKey;
use crate::registration::Registration;

/// How call-home is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `http://HOST[:PORT]/api/v1/nodes/register`.
    pub beacon_url: String,
    /// Mycelium's admin API.
    pub mycelium_api: String,
    /// The node's hostname.
    pub hostname: String,
    /// The signed RPC port to announce.
    pub rpc_port: u16,
    /// Re-register this often after success; None: exit after success.
    pub heartbeat: Option<Duration>,
    /// Allow plain http to addresses that are neither loopback nor mycelium.
    pub allow_insecure_http: bool,
    /// For https: trust only the CA certificates in this PEM file (else the
    /// system's roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// First retry delay; doubles to [`Settings::max_delay`].
    pub first_delay: Duration,
    /// Retry delay cap.
    pub max_delay: Duration,
}

/// A failure that retrying cannot fix.
#[derive(Debug, thiserror::Error)]
pub enum CallHomeError {
    /// The beacon URL is unusable.
    #[error("beacon URL {url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The node's hostname is not one a beacon takes (RFC 1123, lowercase).
    #[error("hostname `{name}` cannot be registered: {reason}")]
    Hostname {
        /// The name, escaped for the log.
        name: String,
        /// What is wrong.
        reason: crate::hostname::HostnameError,
    },
}

/// A parsed http URL.
#[derive(Debug)]
struct Url {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Url, String> {
    let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err("must start with http:// or https://".into()),
    };
    let default_port = if tls { 443 } else { 80 };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed [")?;
        let port = after
            .strip_prefix(':')
            .map(|p| p.parse::<u16>().map_err(|_| "bad port"))
            .transpose()?;
        (host.to_owned(), port.unwrap_or(default_port))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (
                host.to_owned(),
                port.parse::<u16>().map_err(|_| "bad port")?,
            ),
            None => (authority.to_owned(), default_port),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    Ok(Url {
        tls,
        host,
        port,
        path: if path.is_empty() {
            "/".into()
        } else {
            path.to_owned()
        },
    })
}

/// Loopback, or inside mycelium's 400::/7 (already encrypted end to end).
pub fn is_trusted_path(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.octets().first().is_some_and(|b| b & 0xfe == 0x04),
    }
}

/// Checks the beacon URL once, up front.
pub fn check_url(settings: &Settings) -> Result<(), CallHomeError> {
    let fail = |reason: String| CallHomeError::Url {
        url: settings.beacon_url.clone(),
        reason,
    };
    let url = parse_url(&settings.beacon_url).map_err(fail)?;
    if url.tls {
        tls_config(settings.ca_file.as_deref()).map_err(fail)?;
        return Ok(());
    }
    if settings.allow_insecure_http {
        return Ok(());
    }
    let addresses: Vec<IpAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| fail(format!("cannot resolve {}: {e}", url.host)))?
        .map(|a| a.ip())
        .collect();
    if addresses.is_empty() || !addresses.iter().all(|ip| is_trusted_path(*ip)) {
        return Err(fail(format!(
            "plain http to {} would cross an untrusted network; use a loopback or mycelium (400::/7) address, or set allow_insecure_http = true in [beacon]",
            url.host
        )));
    }
    Ok(())
}

/// The TLS client settings: the CA file's certificates, or the system's.
fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("CA file {}: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates (set ca_file in [beacon])".into());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// Reads a whole response; a TLS peer that closes without close_notify
/// after sending it is tolerated.
fn read_all(stream: &mut dyn Read) -> Result<Vec<u8>, String> {
    let mut response = Vec::new();
    match stream.take(1 << 20).read_to_end(&mut response) {
        Ok(_) => Ok(response),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {
            Ok(response)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// One HTTP/1.1 request (https with `ca_file` or the system's roots);
/// returns status and body.
fn http(method: &str, url: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), String> {
    http_with(method, url, body, None)
}

fn http_with(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    ca_file: Option<&std::path::Path>,
) -> Result<(u16, Vec<u8>), String> {
    let url = parse_url(url)?;
    let address = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let tcp =
        TcpStream::connect_timeout(&address, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(|e| e.to_string())?;
    let mut stream: Box<dyn ReadWrite> = if url.tls {
        let name =
            rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| e.to_string())?;
        let connection =
            rustls::ClientConnection::new(tls_config(ca_file)?, name).map_err(|e| e.to_string())?;
        Box::new(rustls::StreamOwned::new(connection, tcp))
    } else {
        Box::new(tcp)
    };
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let mut request = format!("{method} {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: spore-call-home\r\nConnection: close\r\n", url.path, url.port);
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    if let Some(body) = body {
        stream.write_all(body).map_err(|e| e.to_string())?;
    }
    stream.flush().map_err(|e| e.to_string())?;
    let response = read_all(&mut stream)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("no HTTP status line")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.as_bytes().to_vec())
        .unwrap_or_default();
    Ok((status, body))
}

/// A byte stream that is either plain TCP or TLS over it.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// What mycelium's admin API reports.
struct Mycelium {
    subnet: String,
    address: String,
    pubkey: String,
}

fn read_mycelium(api: &str) -> Result<Mycelium, String> {
    let (status, body) = http("GET", api, None)?;
    if status != 200 {
        return Err(format!("mycelium API answered {status}"));
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| format!("mycelium API: {e}"))?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(format!("mycelium API: no {name}"))
    };
    Ok(Mycelium {
        subnet: field("nodeSubnet")?,
        address: field("nodeIp")?,
        pubkey: field("nodePubkey")?,
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One attempt: read mycelium, sign, POST. Ok(address registered).
fn attempt(settings: &Settings, key: &NodeKey) -> Result<String, String> {
    let mycelium = read_mycelium(&settings.mycelium_api)?;
    let mut registration = Registration {
        hostname: settings.hostname.clone(),
        mycelium_pubkey: mycelium.pubkey,
        mycelium_subnet: mycelium.subnet,
        mycelium_address: mycelium.address.clone(),
        hero_proc_port: settings.rpc_port,
        hero_proc_auth_pubkey: key.openssh_public(),
        spore_version: env!("CARGO_PKG_VERSION").to_owned(),
        timestamp: unix_now(),
        extra: BTreeMap::new(),
        signature: String::new(),
    };
    registration
        .sign(key.signing_key())
        .map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&registration).map_err(|e| e.to_string())?;
    let (status, answer) = http_with(
        "POST",
        &settings.beacon_url,
        Some(&body),
        settings.ca_file.as_deref(),
    )?;
    if (200..300).contains(&status) {
        Ok(mycelium.address)
    } else {
        Err(format!(
            "beacon answered {status}: {}",
            String::from_utf8_lossy(&answer).trim()
        ))
    }
}

/// Registers until accepted, then heartbeats forever (or returns at once
/// without a heartbeat). `log` hears every attempt's outcome.
pub fn run(
    settings: &Settings,
    key: &NodeKey,
    log: &mut dyn FnMut(String),
) -> Result<(), CallHomeError> {
    check_url(settings)?;
    crate::hostname::check(&settings.hostname).map_err(|reason| CallHomeError::Hostname {
        name: crate::display::printable(&settings.hostname),
        reason,
    })?;
    let mut delay = settings.first_delay;
    let mut last_address: Option<String> = None;
    loop {
        match attempt(settings, key) {
            Ok(address) => {
                if last_address.as_deref() != Some(address.as_str()) {
                    log(format!(
                        "registered {} at {address} with {}",
                        settings.hostname, settings.beacon_url
                    ));
                    last_address = Some(address);
                }
                delay = settings.first_delay;
                match settings.heartbeat {
                    Some(every) => std::thread::sleep(every),
                    None => return Ok(()),
                }
            }
            Err(reason) => {
                // Jitter in [delay/2, delay] so a fleet rebooting together
                // does not hammer the beacon in step.
                let half = delay / 2;
                let jitter =
                    Duration::from_millis(OsRng.next_u64() % (half.as_millis() as u64 + 1));
                let wait = half + jitter;
                log(format!(
                    "call-home failed: {reason}; retrying in {} ms",
                    wait.as_millis()
                ));
                std::thread::sleep(wait);
                delay = (delay * 2).min(settings.max_delay);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_ipv6_and_ports() {
        let u = parse_url("http://[::1]:8080/api/v1/nodes/register").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8080, "/api/v1/nodes/register")
        );
        let u = parse_url("http://beacon.example").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = parse_url("https://beacon.example/register").unwrap();
        assert!(u.tls);
        assert_eq!(u.port, 443);
        assert!(parse_url("ftp://x/").is_err());
    }

    #[test]
    fn only_loopback_and_mycelium_are_trusted_for_plain_http() {
        for ip in ["127.0.0.1", "::1", "415:6e6d:c26c:5c97::1", "5ff::1"] {
            assert!(is_trusted_path(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.2.2", "8.8.8.8", "fe80::1", "2001:db8::1", "600::1"] {
            assert!(!is_trusted_path(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn untrusted_plain_http_is_refused_with_the_way_out_in_the_message() {
        let settings = Settings {
            beacon_url: "http://10.0.2.2:8080/api/v1/nodes/register".into(),
            mycelium_api: String::new(),
            hostname: "n".into(),
            rpc_port: 9999,
            heartbeat: None,
            allow_insecure_http: false,
            ca_file: None,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        let error = check_url(&settings).unwrap_err().to_string();
        assert!(error.contains("allow_insecure_http"), "{error}");
        assert!(check_url(&Settings {
            allow_insecure_http: true,
            ..settings
        })
        .is_ok());
    }
}
