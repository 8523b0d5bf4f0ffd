//! mycelium's command line (myceliumd v0.7.10), the flags a node's service
//! file passes. Unknown flags are refused, as clap refuses them.

use std::net::SocketAddr;
use std::path::PathBuf;

/// The parsed flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `--peers tcp://IP:PORT …` (quic:// is accepted and ignored).
    pub peers: Vec<SocketAddr>,
    /// `--tun-name`, default `mycelium`.
    pub tun_name: String,
    /// `--no-tun`.
    pub no_tun: bool,
    /// `--api-addr`, default 127.0.0.1:8989.
    pub api_addr: SocketAddr,
    /// `-k/--key-file`, default `priv_key.bin` under `$HOME` (real
    /// mycelium's data directory differs; pass `-k` on a node).
    pub key_file: PathBuf,
    /// `-t/--tcp-listen-port`, default 9651.
    pub tcp_listen_port: u16,
    /// `-q/--quic-listen-port`, default 9651 (UDP).
    pub quic_listen_port: u16,
    /// `--disable-quic`.
    pub disable_quic: bool,
    /// `--jsonrpc-addr`, default 127.0.0.1:8990.
    pub jsonrpc_addr: SocketAddr,
    /// `--log-format` (`logfmt` by default; `plain` has no colours, which
    /// the stand-in never writes anyway).
    pub log_format: String,
    /// `--standin-netns`, the stand-in's own flag (see [`crate::netns`]).
    pub own_netns: bool,
}

fn value(args: &mut impl Iterator<Item = String>, flag: &str) -> Result<String, String> {
    args.next().ok_or_else(|| format!("{flag} needs a value"))
}

fn parse_peer(text: &str) -> Result<Option<SocketAddr>, String> {
    if let Some(address) = text.strip_prefix("tcp://") {
        return address.parse().map(Some).map_err(|_| {
            format!("invalid peer `{text}`: IP literals only, e.g. tcp://10.0.0.1:9651")
        });
    }
    if text.starts_with("quic://") {
        return Ok(None);
    }
    Err(format!(
        "invalid peer `{text}`: expected tcp://IP:PORT or quic://IP:PORT"
    ))
}

/// Parses `args` (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let mut parsed = Args {
        peers: Vec::new(),
        tun_name: "mycelium".into(),
        no_tun: false,
        api_addr: SocketAddr::from(([127, 0, 0, 1], 8989)),
        key_file: PathBuf::from(home).join("priv_key.bin"),
        tcp_listen_port: 9651,
        quic_listen_port: 9651,
        disable_quic: false,
        jsonrpc_addr: SocketAddr::from(([127, 0, 0, 1], 8990)),
        log_format: "logfmt".into(),
        own_netns: false,
    };
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, v)) if flag.starts_with("--") => (flag.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let take = |args: &mut std::iter::Peekable<_>| match &inline {
            Some(v) => Ok(v.clone()),
            None => value(args, &flag),
        };
        match flag.as_str() {
            "--peers" => {
                if let Some(v) = &inline {
                    parsed.peers.extend(parse_peer(v)?);
                }
                while let Some(next) = args.next_if(|a| !a.starts_with('-')) {
                    parsed.peers.extend(parse_peer(&next)?);
                }
            }
            "--tun-name" => parsed.tun_name = take(&mut args)?,
            "--no-tun" => parsed.no_tun = true,
            "--api-addr" => {
                let text = take(&mut args)?;
                parsed.api_addr = text
                    .parse()
                    .map_err(|_| format!("invalid --api-addr `{text}`"))?;
            }
            "-k" | "--key-file" => parsed.key_file = PathBuf::from(take(&mut args)?),
            "-t" | "--tcp-listen-port" => {
                let text = take(&mut args)?;
                parsed.tcp_listen_port = text
                    .parse()
                    .map_err(|_| format!("invalid --tcp-listen-port `{text}`"))?;
            }
            "-q" | "--quic-listen-port" => {
                let text = take(&mut args)?;
                parsed.quic_listen_port = text
                    .parse()
                    .map_err(|_| format!("invalid --quic-listen-port `{text}`"))?;
            }
            "--jsonrpc-addr" => {
                let text = take(&mut args)?;
                parsed.jsonrpc_addr = text
                    .parse()
                    .map_err(|_| format!("invalid --jsonrpc-addr `{text}`"))?;
            }
            "--log-format" => parsed.log_format = take(&mut args)?,
            "--disable-quic" => parsed.disable_quic = true,
            "--standin-netns" => parsed.own_netns = true,
            // Accepted for fidelity; the stand-in has no use for them.
            "--peer-discovery-port" | "--metrics-api-address" | "--firewall-mark" => {
                take(&mut args)?;
            }
            "--disable-peer-discovery" | "--silent" | "--debug" => {}
            other => return Err(format!("unexpected argument '{other}' found")),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_nodes_command_line_parses() {
        let args = parse(words(
            "--peers tcp://192.168.100.2:9651 tcp://192.168.100.3:9651 quic://1.2.3.4:9651 --tun-name myc0 -k /var/lib/mycelium/key --api-addr 127.0.0.1:8989 --disable-peer-discovery --log-format plain",
        ))
        .unwrap();
        assert_eq!(args.peers.len(), 2);
        assert_eq!(args.tun_name, "myc0");
        assert_eq!(args.key_file, PathBuf::from("/var/lib/mycelium/key"));
        assert!(!args.no_tun);
    }

    #[test]
    fn unknown_flags_and_hostnames_are_refused() {
        assert!(parse(words("--tun-url http://[::1]:8989")).is_err());
        assert!(parse(words("--peers tcp://example.com:9651")).is_err());
    }
}
