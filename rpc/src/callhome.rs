//! call-home: read mycelium's address from its API, sign a registration
//! with the node key, POST it to the beacon; retry with backoff and jitter
//! until accepted; then re-register every heartbeat (which also reports a
//! changed mycelium address). Given several beacon URLs (replicas serving
//! one fleet), it stays with the one that answers and moves to the next
//! when it fails; it backs off only when all of them failed in a row. Runs
//! as its own process (`spore call-home`), so plain blocking I/O is fine
//! here.

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::{OsRng, RngCore};
use serde_json::Value;

use crate::enrollment::{Credential, CredentialError};
use crate::http::{is_trusted_path, parse_url, request, tls_config};
use crate::nodekey::NodeKey;
use crate::registration::Registration;

/// Responses from mycelium and the beacon are small: 1 MiB at most.
const RESPONSE_LIMIT: u64 = 1 << 20;

/// How call-home is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `http://HOST[:PORT]/api/v1/nodes/register`, one per beacon replica.
    pub beacon_urls: Vec<String>,
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
    /// The image's enrollment key (its certificate beside it as
    /// `KEY-cert.pub`); `required` says whether a missing file is an error
    /// (it was configured) or means "no credential" (the default path).
    pub enrollment_key: Option<(PathBuf, bool)>,
    /// First retry delay; doubles to [`Settings::max_delay`].
    pub first_delay: Duration,
    /// Retry delay cap.
    pub max_delay: Duration,
    /// Further fields every registration carries (signed with the rest),
    /// such as the node's boot slots.
    pub extra: BTreeMap<String, serde_json::Value>,
    /// Fields read again for every registration, over `extra`: what may
    /// change while call-home runs (the supervisor's build, after a live
    /// re-exec).
    pub refresh: Option<fn() -> BTreeMap<String, serde_json::Value>>,
}

/// Where a beacon takes registrations.
pub const REGISTER_PATH: &str = "/api/v1/nodes/register";

/// Where a beacon serves the artifacts of its cache, each under its
/// SHA-256 in hex.
pub const ARTIFACTS_PATH: &str = "/api/v1/artifacts/";

/// Where the beacon at `url` (as `[beacon] url` gives it: a base URL or
/// its registration URL) serves artifact `hex`.
pub fn artifact_url(url: &str, hex: &str) -> Result<String, String> {
    let parsed = http1::parse_url(url)?;
    let scheme = if parsed.tls { "https" } else { "http" };
    Ok(format!(
        "{scheme}://{}{ARTIFACTS_PATH}{hex}",
        parsed.authority()
    ))
}

/// `url` as call-home posts to it: a beacon's base URL (`https://beacon:8443`,
/// with or without a final `/`) gets [`REGISTER_PATH`]; a URL with a path
/// is kept as written.
pub fn registration_url(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    match after_scheme.find('/') {
        None => format!("{url}{REGISTER_PATH}"),
        Some(at) if after_scheme.get(at..) == Some("/") => {
            format!("{}{REGISTER_PATH}", url.trim_end_matches('/'))
        }
        Some(_) => url.to_owned(),
    }
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
    /// The enrollment credential is configured but unusable.
    #[error("enrollment credential: {0}")]
    Credential(#[from] CredentialError),
}

/// The credential call-home attaches, if any.
pub fn load_credential(settings: &Settings) -> Result<Option<Credential>, CallHomeError> {
    let Some((path, required)) = &settings.enrollment_key else {
        return Ok(None);
    };
    if !required && !path.exists() {
        return Ok(None);
    }
    Ok(Some(Credential::load(path)?))
}

/// Checks every beacon URL once, up front.
pub fn check_urls(settings: &Settings) -> Result<(), CallHomeError> {
    if settings.beacon_urls.is_empty() {
        return Err(CallHomeError::Url {
            url: String::new(),
            reason: "no beacon URL".into(),
        });
    }
    settings
        .beacon_urls
        .iter()
        .try_for_each(|url| check_url(settings, url))
}

/// Checks one beacon URL.
fn check_url(settings: &Settings, beacon_url: &str) -> Result<(), CallHomeError> {
    let fail = |reason: String| CallHomeError::Url {
        url: beacon_url.to_owned(),
        reason,
    };
    let url = parse_url(beacon_url).map_err(fail)?;
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

/// What mycelium's admin API reports.
struct Mycelium {
    subnet: String,
    address: String,
    pubkey: String,
}

fn read_mycelium(api: &str) -> Result<Mycelium, String> {
    let (status, body) = request("GET", api, None, None, RESPONSE_LIMIT)?;
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

/// How one attempt ended, short of a failure.
enum Registered {
    /// Listed at this overlay address.
    Accepted(String),
    /// The beacon keeps it until an operator approves.
    Pending,
}

/// One attempt: read mycelium, sign, POST to `beacon_url`.
fn attempt(
    settings: &Settings,
    beacon_url: &str,
    key: &NodeKey,
    credential: Option<&Credential>,
) -> Result<Registered, String> {
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
        enrollment: credential
            .map(|c| c.prove(&settings.hostname, &key.public()))
            .transpose()?,
        extra: {
            let mut extra = settings.extra.clone();
            if let Some(refresh) = settings.refresh {
                extra.extend(refresh());
            }
            extra
        },
        signature: String::new(),
    };
    registration
        .sign(key.signing_key())
        .map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&registration).map_err(|e| e.to_string())?;
    let (status, answer) = request(
        "POST",
        beacon_url,
        Some(&body),
        settings.ca_file.as_deref(),
        RESPONSE_LIMIT,
    )?;
    if status == 202 {
        Ok(Registered::Pending)
    } else if (200..300).contains(&status) {
        Ok(Registered::Accepted(mycelium.address))
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
    check_urls(settings)?;
    crate::hostname::check(&settings.hostname).map_err(|reason| CallHomeError::Hostname {
        name: crate::display::printable(&settings.hostname),
        reason,
    })?;
    let credential = load_credential(settings)?;
    if let Some(credential) = &credential {
        log(format!(
            "enrolling with credential `{}`",
            crate::display::printable(credential.key_id())
        ));
    }
    let mut delay = settings.first_delay;
    let mut last_registered: Option<(String, usize)> = None;
    let mut pending_logged = false;
    let urls = &settings.beacon_urls;
    let mut current = 0usize;
    // Failures in a row since the last answer; a whole round of them (every
    // URL tried) means back off before the next round.
    let mut failures = 0usize;
    loop {
        let url = urls.get(current).map_or("", String::as_str);
        match attempt(settings, url, key, credential.as_ref()) {
            Ok(Registered::Pending) => {
                failures = 0;
                if !pending_logged {
                    log(format!(
                        "{} waits for an operator's approval at the beacon (sporectl nodes approve {})",
                        settings.hostname, settings.hostname
                    ));
                    pending_logged = true;
                }
                // No doubling while pending: the node is seen soon after
                // the approval, and the beacon's rate limit bounds the cost.
                std::thread::sleep(settings.max_delay.min(Duration::from_secs(10)));
            }
            Ok(Registered::Accepted(address)) => {
                let registered = Some((address, current));
                if last_registered != registered {
                    if let Some((address, _)) = &registered {
                        log(format!(
                            "registered {} at {address} with {url}",
                            settings.hostname
                        ));
                    }
                    last_registered = registered;
                }
                failures = 0;
                delay = settings.first_delay;
                match settings.heartbeat {
                    Some(every) => std::thread::sleep(every),
                    None => return Ok(()),
                }
            }
            Err(reason) => {
                failures += 1;
                if urls.len() > 1 {
                    current = (current + 1) % urls.len();
                    if failures % urls.len() != 0 {
                        log(format!(
                            "call-home failed at {url}: {reason}; trying {}",
                            urls.get(current).map_or("", String::as_str)
                        ));
                        continue;
                    }
                }
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
    #[test]
    fn a_base_url_registers_at_the_registration_path() {
        use super::registration_url;
        let full = "http://10.0.2.2:8080/api/v1/nodes/register";
        assert_eq!(registration_url("http://10.0.2.2:8080"), full);
        assert_eq!(registration_url("http://10.0.2.2:8080/"), full);
        assert_eq!(registration_url(full), full);
        assert_eq!(
            registration_url("https://[400::1]:8443"),
            "https://[400::1]:8443/api/v1/nodes/register"
        );
        assert_eq!(
            registration_url("https://b.example/custom"),
            "https://b.example/custom"
        );
    }

    #[test]
    fn a_beacon_serves_artifacts_at_its_artifact_path() {
        use super::artifact_url;
        let hex = "ab".repeat(32);
        for url in [
            "http://10.0.2.2:8080",
            "http://10.0.2.2:8080/",
            "http://10.0.2.2:8080/api/v1/nodes/register",
        ] {
            assert_eq!(
                artifact_url(url, &hex).unwrap(),
                format!("http://10.0.2.2:8080/api/v1/artifacts/{hex}"),
                "{url}"
            );
        }
        assert_eq!(
            artifact_url("https://[400::1]:8443", &hex).unwrap(),
            format!("https://[400::1]:8443/api/v1/artifacts/{hex}")
        );
        assert!(artifact_url("ftp://x", &hex).is_err());
    }

    use super::*;

    #[test]
    fn untrusted_plain_http_is_refused_with_the_way_out_in_the_message() {
        let settings = Settings {
            beacon_urls: vec![
                "http://127.0.0.1:8080/api/v1/nodes/register".into(),
                "http://10.0.2.2:8080/api/v1/nodes/register".into(),
            ],
            mycelium_api: String::new(),
            hostname: "n".into(),
            rpc_port: 9999,
            heartbeat: None,
            allow_insecure_http: false,
            ca_file: None,
            enrollment_key: None,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            extra: BTreeMap::new(),
            refresh: None,
        };
        let error = check_urls(&settings).unwrap_err().to_string();
        assert!(error.contains("allow_insecure_http"), "{error}");
        assert!(
            error.contains("10.0.2.2"),
            "names the URL at fault: {error}"
        );
        assert!(check_urls(&Settings {
            allow_insecure_http: true,
            ..settings
        })
        .is_ok());
    }
}
