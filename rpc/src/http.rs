//! A small blocking HTTP/1.1 client for the beacon's API and mycelium's
//! (URLs and responses are read by [`http1`]):
//! plain http, or https with rustls (the system's roots or a CA file), one
//! request per connection, bounded responses. call-home and sporectl use it.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

pub use http1::{parse_url, Url};

/// Loopback, or inside mycelium's 400::/7 (already encrypted end to end).
pub fn is_trusted_path(ip: IpAddr) -> bool {
    // ::ffff:127.0.0.1 is loopback too: judge the address, not its spelling.
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.octets().first().is_some_and(|b| b & 0xfe == 0x04),
    }
}

/// The TLS client settings: the CA file's certificates, or the system's.
pub fn tls_config(
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
        return Err("no trusted CA certificates (give a CA file)".into());
    }
    let provider = std::sync::Arc::new(client_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// ring's cryptography as a TLS client needs it: ring's default cipher
/// suites, key exchanges and signature checks, and no private keys (spore
/// sends no client certificate). Without ring's key loader the linker drops
/// its RSA and ECDSA signing code, which only a client certificate or a
/// server would use.
fn client_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::CryptoProvider {
        key_provider: &NoClientKeys,
        ..rustls::crypto::ring::default_provider()
    }
}

/// The key loader of a client that has no certificate of its own.
#[derive(Debug)]
struct NoClientKeys;

impl rustls::crypto::KeyProvider for NoClientKeys {
    fn load_private_key(
        &self,
        _key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<std::sync::Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        Err(rustls::Error::General(
            "spore's TLS client uses no private key".into(),
        ))
    }
}

/// Reads a whole response; a TLS peer that closes without close_notify
/// after sending it is tolerated.
pub fn read_all(stream: &mut dyn Read, limit: u64) -> Result<Vec<u8>, String> {
    let mut response = Vec::new();
    match stream.take(limit).read_to_end(&mut response) {
        Ok(_) => Ok(response),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {
            Ok(response)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// One HTTP/1.1 request (https trusting `ca_file`'s certificates, else
/// the system's roots); reads at most `limit` bytes of response; returns
/// status and body. Blocking, with connect and read timeouts.
pub fn request(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    ca_file: Option<&std::path::Path>,
    limit: u64,
) -> Result<(u16, Vec<u8>), String> {
    let response = exchange(method, url, body, ca_file, limit)?;
    http1::parse_response(&response)
}

/// The time a server's `Date` header says, and ours when it arrived (a
/// `GET` of `url`, whatever its status: every answer carries the date).
pub fn server_date(
    url: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<(std::time::SystemTime, std::time::SystemTime), String> {
    let response = exchange("GET", url, None, ca_file, 64 * 1024)?;
    let ours = std::time::SystemTime::now();
    let date = http1::header(&response, "date").ok_or("the answer has no Date header")?;
    let theirs = timespan::parse_http_date(&date).ok_or("the Date header is not an HTTP date")?;
    Ok((theirs, ours))
}

/// Sends one request and reads the whole response, head and body.
fn exchange(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    ca_file: Option<&std::path::Path>,
    limit: u64,
) -> Result<Vec<u8>, String> {
    let url = parse_url(url)?;
    let mut stream = connect(
        &url,
        ca_file,
        Duration::from_secs(10),
        Duration::from_secs(15),
    )?;
    let mut request = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: spore\r\nConnection: close\r\n",
        url.path,
        url.authority()
    );
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
    read_all(&mut stream, limit)
}

/// A byte stream that is either plain TCP or TLS over it.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A connection to `url`'s server, TLS for https (trusting `ca_file`, else
/// the system's roots): the connect bounded by `connect`, each read and
/// write by `io`.
pub fn connect(
    url: &Url,
    ca_file: Option<&std::path::Path>,
    connect: Duration,
    io: Duration,
) -> Result<Box<dyn ReadWrite>, String> {
    let address = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", url.host))?
        .next()
        .ok_or_else(|| format!("{}: no address", url.host))?;
    let tcp = TcpStream::connect_timeout(&address, connect).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(io))
        .and_then(|()| tcp.set_write_timeout(Some(io)))
        .map_err(|e| e.to_string())?;
    if !url.tls {
        return Ok(Box::new(tcp));
    }
    let name =
        rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| e.to_string())?;
    let connection =
        rustls::ClientConnection::new(tls_config(ca_file)?, name).map_err(|e| e.to_string())?;
    Ok(Box::new(rustls::StreamOwned::new(connection, tcp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_answer_from_a_real_server_is_read_whole() {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (connection, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(connection.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let mut writer = connection;
            writer
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n{\"ok\":\r\n5\r\ntrue}\r\n0\r\n\r\n")
                .unwrap();
        });
        let (status, body) = request(
            "GET",
            &format!("http://{address}/api/v1/nodes"),
            None,
            None,
            4096,
        )
        .unwrap();
        server.join().unwrap();
        assert_eq!(
            (status, body.as_slice()),
            (200, br#"{"ok":true}"#.as_slice())
        );
    }

    #[test]
    fn only_loopback_and_mycelium_are_trusted_for_plain_http() {
        for ip in [
            "127.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "415:6e6d:c26c:5c97::1",
            "5ff::1",
        ] {
            assert!(is_trusted_path(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.2.2", "8.8.8.8", "fe80::1", "2001:db8::1", "600::1"] {
            assert!(!is_trusted_path(ip.parse().unwrap()), "{ip}");
        }
    }
}
