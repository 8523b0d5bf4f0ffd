//! `[[sockets]]`: sockets spore listens on for a service, which it starts
//! on their first connection (socket activation, hero_proc's xinet).
//!
//! ```toml
//! [[sockets]]
//! listen = "tcp:[::]:8080"      # or "unix:/run/app.sock"
//! name = "http"                 # LISTEN_FDNAMES (default: the service's name)
//! mode = "pass"                 # or "proxy", with backend = "tcp:127.0.0.1:18080"
//! idle_stop = "5m"              # stop the service after 5 minutes without a connection
//! ```

use std::path::PathBuf;
use std::time::Duration;

use crate::section::{Located, Section};
use crate::service::{Endpoint, Socket, SocketMode};

/// Sockets one service may have at most.
pub const MAX_SOCKETS: usize = 16;

/// The longest Unix socket path (`sun_path` holds 108 bytes with its NUL).
const MAX_UNIX_PATH: usize = 107;

/// Reads every `[[sockets]]` table; a bad one is reported and left out.
/// `service` is the service's name (each socket's default name).
pub(super) fn read_sockets(top: &mut Section<'_, '_, '_>, service: Option<&str>) -> Vec<Socket> {
    let mut out: Vec<Socket> = Vec::new();
    let tables = top.tables("sockets");
    if tables.len() > MAX_SOCKETS {
        let span = top.span();
        top.out_of_range(
            "sockets",
            &span,
            &format!(
                "are {} tables; a service has at most {MAX_SOCKETS}",
                tables.len()
            ),
        );
    }
    for mut table in tables {
        if let Some(socket) = read_one(&mut table, service.unwrap_or_default()) {
            let span = table.span();
            if out.iter().any(|s| s.listen == socket.listen) {
                table.out_of_range("listen", &span, "is given to two sockets");
            } else if out.iter().any(|s| s.idle_stop != socket.idle_stop) {
                table.out_of_range(
                    "idle_stop",
                    &span,
                    "must be the same on every socket of a service (it stops the service, not the socket)",
                );
            } else {
                out.push(socket);
            }
        }
        table.finish();
    }
    out.truncate(MAX_SOCKETS);
    out
}

fn read_one(table: &mut Section<'_, '_, '_>, service: &str) -> Option<Socket> {
    let listen = table.string("listen");
    if listen.is_none() {
        table.missing("listen");
    }
    let (line, column) = listen
        .as_ref()
        .map_or((1, 1), |l| table.ctx().position(l.span.start));
    let listen = listen.and_then(|text| endpoint(table, "listen", &text));
    let name = match table.string("name") {
        Some(name) if is_fd_name(&name.value) => Some(name.value),
        Some(name) => {
            table.out_of_range(
                "name",
                &name.span,
                "must be 1 to 255 letters, digits, `-`, `_` or `.` (it goes into LISTEN_FDNAMES, split at `:`)",
            );
            None
        }
        None => Some(service.to_owned()),
    };
    let mode = table.string("mode");
    let backend = table.string("backend");
    let mode = match (mode.as_ref().map(|m| m.value.as_str()), backend) {
        (None | Some("pass"), None) => Some(SocketMode::Pass),
        (None | Some("pass"), Some(backend)) => {
            table.out_of_range(
                "backend",
                &backend.span,
                "is for mode = \"proxy\": a passed socket is the service's own",
            );
            None
        }
        (Some("proxy"), Some(backend)) => {
            endpoint(table, "backend", &backend).map(|backend| SocketMode::Proxy { backend })
        }
        (Some("proxy"), None) => {
            let span = table.span();
            table.out_of_range(
                "backend",
                &span,
                "is needed with mode = \"proxy\": the address the service itself listens on",
            );
            None
        }
        (Some(_), _) => {
            if let Some(mode) = &mode {
                table.out_of_range("mode", &mode.span, "must be \"pass\" or \"proxy\"");
            }
            None
        }
    };
    let idle_stop = table
        .value("idle_stop")
        .is_some()
        .then(|| table.millis("idle_stop", Duration::ZERO, false))
        .filter(|d| !d.is_zero());
    Some(Socket {
        listen: listen?,
        name: name?,
        mode: mode?,
        idle_stop,
        line,
        column,
    })
}

/// `tcp:HOST:PORT` (HOST an IPv4 address or a bracketed IPv6 one) or
/// `unix:/absolute/path`; reported against `key` when it is neither.
fn endpoint(
    table: &Section<'_, '_, '_>,
    key: &'static str,
    text: &Located<String>,
) -> Option<Endpoint> {
    match parse_endpoint(&text.value) {
        Ok(endpoint) => Some(endpoint),
        Err(message) => {
            table.out_of_range(key, &text.span, message);
            None
        }
    }
}

/// An endpoint from its text, or what is wrong with it.
pub fn parse_endpoint(text: &str) -> Result<Endpoint, &'static str> {
    if let Some(address) = text.strip_prefix("tcp:") {
        return address
            .parse()
            .map(Endpoint::Tcp)
            .map_err(|_| "must be tcp:ADDRESS:PORT with an IP address (tcp:0.0.0.0:8080, tcp:[::]:8080, tcp:127.0.0.1:8080)");
    }
    if let Some(path) = text.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err("must be unix: and an absolute path (unix:/run/app.sock)");
        }
        if path.len() > MAX_UNIX_PATH || path.contains('\0') {
            return Err("must be a Unix socket path of at most 107 bytes, without NUL");
        }
        return Ok(Endpoint::Unix(PathBuf::from(path)));
    }
    Err("must start with tcp: or unix: (tcp:[::]:8080, unix:/run/app.sock)")
}

/// A name `LISTEN_FDNAMES` can carry.
fn is_fd_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
