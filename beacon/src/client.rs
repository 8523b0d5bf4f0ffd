//! The operator's side of the beacon: list nodes, list pending ones, send
//! signed orders. The beacon is where operators learn which node keys to
//! pin, so it is read only over an authenticated channel: https (the
//! system's roots, or a CA file), or plain http to loopback or a mycelium
//! address (400::/7: reachable only through the key the address is derived
//! from). Plain http anywhere else is refused unless the operator insists,
//! and then the pins it yields are marked unauthenticated.

use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;

use serde_json::Value;

use rpc::client::ClientError;
use rpc::http::{is_trusted_path, parse_url, request, tls_config};
use rpc::identity::Identity;
use rpc::upload::Source;

/// How long a connect or a read or write of a publish may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Room for ~100,000 records.
const LIST_LIMIT: u64 = 64 << 20;

/// Whether what the beacon says can be trusted for pinning node keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// https, or http to loopback or mycelium.
    Authenticated,
    /// Plain http over a network anyone may sit on (`--insecure-beacon`).
    Unauthenticated,
}

/// Talking to the beacon failed.
#[derive(Debug, thiserror::Error)]
pub enum BeaconClientError {
    /// The URL cannot be used (or may not be used over plain http).
    #[error("beacon {url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// No answer.
    #[error("beacon {url} did not answer: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What the connection said.
        reason: String,
    },
    /// An answer that is not what the API promises.
    #[error("beacon {url}: {reason}")]
    Protocol {
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The beacon refused (status and its message).
    #[error("beacon answered {status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its `error` field, escaped.
        message: String,
    },
}

/// A beacon as an operator reaches it.
#[derive(Debug, Clone)]
pub struct BeaconClient {
    base: String,
    ca_file: Option<PathBuf>,
    /// How far its answers can be trusted.
    pub channel: Channel,
}

impl BeaconClient {
    /// Checks `url` (`https://HOST[:PORT]` or `http://…`): https needs a CA
    /// (`ca_file`, else the system's roots); plain http must go to loopback
    /// or mycelium unless `insecure`.
    pub fn new(
        url: &str,
        ca_file: Option<PathBuf>,
        insecure: bool,
    ) -> Result<Self, BeaconClientError> {
        let fail = |reason: String| BeaconClientError::Url {
            url: url.to_owned(),
            reason,
        };
        let parsed = parse_url(url).map_err(fail)?;
        let base = url.trim_end_matches('/').to_owned();
        if parsed.tls {
            tls_config(ca_file.as_deref()).map_err(fail)?;
            return Ok(Self {
                base,
                ca_file,
                channel: Channel::Authenticated,
            });
        }
        let addresses: Vec<_> = (parsed.host.as_str(), parsed.port)
            .to_socket_addrs()
            .map_err(|e| fail(format!("cannot resolve {}: {e}", parsed.host)))?
            .map(|a| a.ip())
            .collect();
        let trusted = !addresses.is_empty() && addresses.iter().all(|ip| is_trusted_path(*ip));
        let channel = match (trusted, insecure) {
            (true, _) => Channel::Authenticated,
            (false, true) => Channel::Unauthenticated,
            (false, false) => return Err(fail(format!(
                "plain http to {} crosses a network anyone may sit on, and the node keys a beacon publishes are what sporectl pins; use https (--beacon-ca FILE for your own CA), a loopback or mycelium address, or --insecure-beacon (fleet commands that change state then refuse its nodes)",
                parsed.host
            ))),
        };
        Ok(Self {
            base,
            ca_file,
            channel,
        })
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Value, BeaconClientError> {
        let url = format!("{}{path}", self.base);
        let (status, body) = request(method, &url, body, self.ca_file.as_deref(), LIST_LIMIT)
            .map_err(|reason| BeaconClientError::Unreachable {
                url: self.base.clone(),
                reason,
            })?;
        let value: Value =
            serde_json::from_slice(&body).map_err(|e| BeaconClientError::Protocol {
                url: self.base.clone(),
                reason: format!("not JSON ({e})"),
            })?;
        if !(200..300).contains(&status) {
            return Err(BeaconClientError::Refused {
                status,
                message: rpc::display::printable(
                    value.get("error").and_then(Value::as_str).unwrap_or("-"),
                ),
            });
        }
        Ok(value)
    }

    fn list(&self, path: &str) -> Result<Vec<Value>, BeaconClientError> {
        match self.call("GET", path, None)? {
            Value::Array(records) => Ok(records),
            _ => Err(BeaconClientError::Protocol {
                url: self.base.clone(),
                reason: "the list is not an array".into(),
            }),
        }
    }

    /// The enrolled nodes' records.
    pub fn nodes(&self) -> Result<Vec<Value>, BeaconClientError> {
        self.list("/api/v1/nodes")
    }

    /// Registrations waiting for approval.
    pub fn pending(&self) -> Result<Vec<Value>, BeaconClientError> {
        self.list("/api/v1/pending")
    }

    /// The artifacts its cache holds (`sha256`, `size`); refused (404) by
    /// a beacon that keeps none.
    pub fn artifacts(&self) -> Result<Vec<Value>, BeaconClientError> {
        self.list("/api/v1/artifacts")
    }

    /// Sends a signed order; returns the beacon's answer.
    pub fn order(&self, order: &super::admin::Order) -> Result<Value, BeaconClientError> {
        let body = serde_json::to_vec(order).map_err(|e| BeaconClientError::Protocol {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        self.call("POST", "/api/v1/admin", Some(&body))
    }
}

/// What publishing an artifact did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The beacon stored it (from this byte on: an earlier upload's part
    /// was resumed when above 0).
    Stored {
        /// Where this upload started.
        from: u64,
    },
    /// The beacon held it already; nothing was sent.
    Held,
}

impl BeaconClient {
    /// The URL of artifact `hex` at this beacon, with `query`.
    fn artifact_url(&self, hex: &str, query: &str) -> String {
        format!("{}{}{hex}{query}", self.base, crate::cache::ARTIFACTS_PATH)
    }

    /// How much of `source` the beacon holds: all of it (None), or the
    /// bytes of an upload under way to resume after.
    fn held(&self, source: &Source) -> Result<Option<u64>, BeaconClientError> {
        let url = self.artifact_url(
            &source.digest.hex(),
            &format!("?local=1&size={}", source.size),
        );
        let (status, head) = self.head_only("HEAD", &url)?;
        match status {
            200 => Ok(None),
            404 => Ok(Some(
                http1::header(&head, "spore-held")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            other => Err(self.refused(other, &head)),
        }
    }

    /// Sends a request without a body; its status and head.
    fn head_only(&self, method: &str, url: &str) -> Result<(u16, Vec<u8>), BeaconClientError> {
        let unreachable = |reason: String| BeaconClientError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let parsed = http1::parse_url(url).map_err(unreachable)?;
        let request = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sporectl\r\nConnection: close\r\n\r\n",
            parsed.path,
            parsed.authority()
        );
        let answered = rpc::fetch::ask(&parsed, self.ca_file.as_deref(), TIMEOUT, &request)
            .map_err(unreachable)?;
        Ok((answered.status, answered.head))
    }

    fn refused(&self, status: u16, body: &[u8]) -> BeaconClientError {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {status}"));
        BeaconClientError::Refused {
            status,
            message: rpc::display::printable(&message),
        }
    }

    /// Opens a connection to artifact `hex` and sends the head of a
    /// `method` request carrying `order` (signed; base64 in `Spore-Order`)
    /// and `headers` (each ending in CRLF); the body, if any, is the
    /// caller's to send.
    fn send_order(
        &self,
        method: &str,
        hex: &str,
        order: Result<super::admin::Order, String>,
        headers: &str,
    ) -> Result<Box<dyn rpc::http::ReadWrite>, BeaconClientError> {
        let protocol = |reason: String| BeaconClientError::Protocol {
            url: self.base.clone(),
            reason,
        };
        let order =
            serde_json::to_vec(&order.map_err(protocol)?).map_err(|e| protocol(e.to_string()))?;
        let unreachable = |reason: String| BeaconClientError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let url = http1::parse_url(&self.artifact_url(hex, "")).map_err(unreachable)?;
        let mut stream = rpc::http::connect(&url, self.ca_file.as_deref(), TIMEOUT, TIMEOUT)
            .map_err(unreachable)?;
        let request = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sporectl\r\n{headers}Spore-Order: {}\r\nConnection: close\r\n\r\n",
            url.path,
            url.authority(),
            base64::engine::general_purpose::STANDARD.encode(order)
        );
        stream
            .write_all(request.as_bytes())
            .and_then(|()| stream.flush())
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(stream)
    }

    /// Removes the artifact `sha256` from the beacon's cache, by an order
    /// signed with `identity` (an admin key at the beacon). False when the
    /// beacon did not hold it.
    pub fn unpublish(&self, sha256: &str, identity: &Identity) -> Result<bool, BeaconClientError> {
        let order = super::admin::Order::unpublish(sha256, identity, proto::rpc::unix_time());
        let mut stream = self.send_order("DELETE", sha256, order, "Content-Length: 0\r\n")?;
        let unreachable = |reason: String| BeaconClientError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let response = rpc::http::read_all(&mut stream, 64 * 1024).map_err(unreachable)?;
        let (status, body) = http1::parse_response(&response).map_err(unreachable)?;
        match status {
            200 => Ok(true),
            404 => Ok(false),
            other => Err(self.refused(other, &body)),
        }
    }

    /// Publishes `source` to the beacon's artifact cache, signed by
    /// `identity` (an admin key at the beacon): resumes an upload cut off
    /// before, sends nothing when the beacon holds it. `progress` is
    /// called with the bytes the beacon has as they go.
    pub fn publish(
        &self,
        source: &Source,
        identity: &Identity,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Published, BeaconClientError> {
        let Some(from) = self.held(source)? else {
            return Ok(Published::Held);
        };
        let from = if from < source.size { from } else { 0 };
        let hex = source.digest.hex();
        let order =
            super::admin::Order::publish(&hex, source.size, identity, proto::rpc::unix_time());
        let headers = format!(
            "Content-Type: application/octet-stream\r\nContent-Length: {}\r\nSpore-Offset: {from}\r\nExpect: 100-continue\r\n",
            source.size - from
        );
        let mut stream = self.send_order("PUT", &hex, order, &headers)?;
        let unreachable = |reason: String| BeaconClientError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let (head, rest) = rpc::fetch::read_head(&mut stream).map_err(unreachable)?;
        let (head, rest) = if http1::status(&head) == Some(100) {
            let mut file = source
                .open_at(from)
                .map_err(|e| unreachable(e.to_string()))?;
            let mut buffer = vec![0u8; 256 * 1024];
            let mut sent = from;
            while sent < source.size {
                let n = file
                    .read(&mut buffer)
                    .map_err(|e| unreachable(e.to_string()))?;
                if n == 0 {
                    return Err(unreachable(format!(
                        "{} got shorter while it was sent",
                        source.file
                    )));
                }
                stream
                    .write_all(buffer.get(..n).unwrap_or_default())
                    .map_err(|e| unreachable(e.to_string()))?;
                sent += n as u64;
                progress(sent);
            }
            stream.flush().map_err(|e| unreachable(e.to_string()))?;
            rpc::fetch::read_head(&mut stream).map_err(unreachable)?
        } else {
            (head, rest)
        };
        let mut response = head;
        response.extend_from_slice(&rest);
        response.extend(rpc::http::read_all(&mut stream, 64 * 1024).map_err(unreachable)?);
        let (status, body) = http1::parse_response(&response).map_err(unreachable)?;
        if status != 200 {
            return Err(self.refused(status, &body));
        }
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok(if value.get("published") == Some(&Value::Bool(true)) {
            Published::Stored { from }
        } else {
            Published::Held
        })
    }
}

/// sporectl reports beacon failures with the exit codes of node failures:
/// a refused URL is declined (2), no answer unreachable (3), a refusal an
/// error answer (1).
impl From<BeaconClientError> for ClientError {
    fn from(error: BeaconClientError) -> Self {
        match error {
            BeaconClientError::Url { .. } => ClientError::Declined(error.to_string()),
            BeaconClientError::Unreachable { .. } => ClientError::Unreachable(error.to_string()),
            BeaconClientError::Protocol { .. } => ClientError::Protocol(error.to_string()),
            BeaconClientError::Refused { status, message } => ClientError::Rpc {
                code: i64::from(status),
                message: format!("beacon refused: {message}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_authenticated_only_to_loopback_and_mycelium() {
        for url in ["http://127.0.0.1:1", "http://[::1]:1", "http://[415::1]:1"] {
            let client = BeaconClient::new(url, None, false).unwrap();
            assert_eq!(client.channel, Channel::Authenticated, "{url}");
        }
        let error = BeaconClient::new("http://192.0.2.1:8080", None, false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("https"), "{error}");
        assert!(error.contains("--insecure-beacon"), "{error}");
        let insecure = BeaconClient::new("http://192.0.2.1:8080", None, true).unwrap();
        assert_eq!(insecure.channel, Channel::Unauthenticated);
    }
}
