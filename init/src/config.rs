//! The node configuration, `/etc/spore/spore.toml`. Every table is typed and
//! refuses unknown keys (`FILE:LINE:COLUMN`, the nearest key). A bad key is
//! logged and only that key is left out, the rest of its table applies (a
//! typo in `[rpc]` must cost the node neither its network, nor its disks,
//! nor the listeners and limits set beside the typo); a file that is not
//! TOML, or missing, gives the defaults.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The RPC port when an address gives none.
pub const DEFAULT_PORT: u16 = 9999;

/// spore.toml.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's hostname; else `spore.hostname=` on the kernel command
    /// line; else derived from the node key.
    pub hostname: Option<String>,
    /// Kernel modules to load, in order, by path under /lib/modules/`uname -r`
    /// or by bare name (`tun`, `virtio_net`).
    #[serde(default)]
    pub modules: Vec<String>,
    /// Static NIC configuration: one `[network]` table or several
    /// `[[network]]` tables (one per interface); absent: leave it to a DHCP
    /// service.
    pub network: Option<Networks>,
    /// Filesystems to mount after the modules are loaded and before the
    /// node key is read (`[[mount]]` tables), e.g. a disk on
    /// /var/lib/spore so the node key outlives a reboot.
    #[serde(default)]
    pub mount: Vec<Mount>,
    /// The local control socket's limits (`[control]`).
    #[serde(default)]
    pub control: Control,
    /// The signed RPC listener (`[rpc]`).
    #[serde(default)]
    pub rpc: Rpc,
    /// Call-home settings (`[beacon]`).
    #[serde(default)]
    pub beacon: Beacon,
}

/// One `[rpc] listen` entry, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// The node's mycelium overlay address, bound when mycelium is ready.
    Mycelium(u16),
    /// A fixed socket address.
    Address(std::net::SocketAddr),
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = String::deserialize(deserializer)?;
        Listen::parse(&text).map_err(D::Error::custom)
    }
}

impl Listen {
    /// `mycelium`, `mycelium:PORT` or `HOST:PORT` (an IP address).
    pub fn parse(text: &str) -> Result<Listen, String> {
        if let Some(rest) = text.strip_prefix("mycelium") {
            return match rest {
                "" => Ok(Listen::Mycelium(DEFAULT_PORT)),
                _ => rest
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .map(Listen::Mycelium)
                    .ok_or_else(|| format!("listen entry `{text}`: expected mycelium:PORT")),
            };
        }
        text.parse().map(Listen::Address).map_err(|_| {
            format!(
                "listen entry `{text}`: expected IP:PORT ([::1]:9999), mycelium or mycelium:PORT"
            )
        })
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Mycelium(port) => write!(f, "mycelium:{port}"),
            Listen::Address(address) => write!(f, "{address}"),
        }
    }
}

/// `[rpc]`: where the signed RPC API listens and what it may cost.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Rpc {
    /// Addresses to listen on; default `127.0.0.1:9999` and `mycelium`.
    pub listen: Option<Vec<Listen>>,
    /// Time from accept to the end of the handshake.
    #[serde(default, deserialize_with = "span_ms::optional")]
    pub handshake_timeout_ms: Option<u64>,
    /// The handshake deadline while the pre-auth table is half full.
    #[serde(default, deserialize_with = "span_ms::optional")]
    pub pressure_timeout_ms: Option<u64>,
    /// Connections at once.
    pub max_connections: Option<u64>,
    /// Connections in their handshake.
    pub max_handshaking: Option<u64>,
    /// Connections in their handshake from one source address.
    pub max_handshaking_per_source: Option<u64>,
    /// An authenticated session idle this long is closed.
    #[serde(default, deserialize_with = "span_ms::optional")]
    pub session_idle_timeout_ms: Option<u64>,
    /// Sessions at once per operator key.
    pub max_sessions_per_key: Option<u64>,
    /// Connections kept for admin keys (0: none).
    pub admin_reserved: Option<u64>,
    /// The service whose readiness means the overlay address exists.
    pub mycelium_service: Option<String>,
    /// mycelium's admin API, where its `nodeIp` is read.
    pub mycelium_api: Option<String>,
}

impl Rpc {
    /// The port announced to the beacon: the `mycelium:PORT` entry, else 9999.
    pub fn announced_port(&self) -> u16 {
        self.listen
            .iter()
            .flatten()
            .find_map(|l| match l {
                Listen::Mycelium(port) => Some(*port),
                Listen::Address(_) => None,
            })
            .unwrap_or(DEFAULT_PORT)
    }
}

/// `[beacon]`: call-home's settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Beacon {
    /// The beacon's URL, or several (replicas serving one fleet: call-home
    /// fails over between them). `CALL_HOME_URL` overrides it.
    #[serde(deserialize_with = "one_or_many")]
    pub url: Vec<String>,
    /// mycelium's admin API.
    pub mycelium_api: Option<String>,
    /// Seconds between heartbeats after registering (absent or 0: none).
    #[serde(default, deserialize_with = "span_ms::optional_seconds")]
    pub heartbeat_s: Option<u64>,
    /// Allow plain http to a beacon that is not loopback or mycelium.
    pub allow_insecure_http: bool,
    /// A CA file to trust for an https beacon.
    pub ca_file: Option<PathBuf>,
    /// The enrollment credential (default CONFIG_DIR/enrollment_key).
    pub enrollment_key: Option<PathBuf>,
    /// First retry delay.
    #[serde(default, deserialize_with = "span_ms::optional")]
    pub retry_first_ms: Option<u64>,
    /// Longest retry delay.
    #[serde(default, deserialize_with = "span_ms::optional")]
    pub retry_max_ms: Option<u64>,
}

/// A string or a list of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a URL or a list of URLs")
        }
        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(vec![value.to_owned()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(url) = seq.next_element::<String>()? {
                out.push(url);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// `[control]`: bounds on the local control socket.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Control {
    /// A connection that sends no request for this long is closed (a
    /// follow counts as active while it streams). Default 60,000.
    #[serde(deserialize_with = "span_ms::required")]
    pub idle_timeout_ms: u64,
    /// Connections served at once; more are answered "too many
    /// connections" and closed. Default 64.
    pub max_connections: usize,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 60_000,
            max_connections: 64,
        }
    }
}

/// `[network]` (one interface) or `[[network]]` (several).
#[derive(Debug, Clone, PartialEq)]
pub enum Networks {
    /// One interface.
    One(Network),
    /// Several, configured in order.
    Many(Vec<Network>),
}

impl<'de> Deserialize<'de> for Networks {
    /// A table or an array of tables, each read strictly, so a typo keeps
    /// its own message (`unknown field `adress``) instead of serde's
    /// untagged "did not match any variant".
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = toml::Value::deserialize(deserializer)?;
        if value.is_array() {
            value
                .try_into()
                .map(Networks::Many)
                .map_err(D::Error::custom)
        } else {
            value
                .try_into()
                .map(Networks::One)
                .map_err(D::Error::custom)
        }
    }
}

impl Networks {
    /// Every interface, in file order.
    pub fn interfaces(&self) -> &[Network] {
        match self {
            Networks::One(one) => std::slice::from_ref(one),
            Networks::Many(many) => many,
        }
    }
}

/// A static IPv4 address on one interface.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Interface name, e.g. `eth0`.
    pub interface: String,
    /// Address with prefix length, e.g. `10.0.2.15/24`.
    pub address: Option<String>,
    /// Default gateway.
    pub gateway: Option<Ipv4Addr>,
}

impl Network {
    /// The address and prefix length of [`Network::address`].
    pub fn address(&self) -> Result<Option<(Ipv4Addr, u8)>, String> {
        let Some(text) = &self.address else {
            return Ok(None);
        };
        let (ip, prefix) = text.split_once('/').ok_or_else(|| {
            format!("network.address `{text}` needs a prefix length, e.g. 10.0.2.15/24")
        })?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("network.address `{text}` is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("network.address `{text}` has a bad prefix length"))?;
        Ok(Some((ip, prefix)))
    }
}

/// One `[[mount]]` table: a filesystem PID 1 mounts at boot.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// The device (`/dev/vda`, `/dev/nvme0n1p2`) or a pseudo source
    /// (`tmpfs`).
    pub source: String,
    /// An absolute directory; created when missing.
    pub target: PathBuf,
    /// The filesystem type, e.g. `ext4` (its module listed in `modules`).
    #[serde(rename = "type")]
    pub fstype: String,
    /// mount(8)-style options: `ro`, `nosuid`, `nodev`, `noexec`,
    /// `noatime`, `nodiratime`, `relatime`, `sync`, `dirsync` become flags;
    /// the rest (`errors=remount-ro`, `mode=0700`) go to the filesystem.
    pub options: Option<String>,
    /// How long to wait for a `/dev/` source to appear (drivers such as
    /// nvme probe asynchronously); default 10000.
    #[serde(default, deserialize_with = "span_ms::optional")]
    pub wait_ms: Option<u64>,
}

impl Mount {
    /// Default for [`Mount::wait_ms`].
    pub const DEFAULT_WAIT_MS: u64 = 10_000;

    /// What is wrong with this table, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.source.is_empty() {
            return Some("mount.source is empty".into());
        }
        if self.fstype.is_empty() {
            return Some(format!("mount `{}`: type is empty", self.source));
        }
        if !self.target.is_absolute() {
            return Some(format!(
                "mount `{}`: target `{}` is not an absolute path",
                self.source,
                self.target.display()
            ));
        }
        None
    }
}

/// Reads `path`; returns defaults plus an error message when it is missing
/// or invalid (`FILE:LINE:COLUMN: …`, with the nearest key for a typo).
pub fn load(path: &Path) -> (NodeConfig, Option<String>) {
    match std::fs::read_to_string(path) {
        Ok(text) => match parse(path, &text) {
            Ok(config) => (config, None),
            Err(error) => match salvage(&text) {
                Some((config, dropped)) if !dropped.is_empty() => (
                    config,
                    Some(format!(
                        "{error}; {} left out, the rest applies",
                        dropped.join(", ")
                    )),
                ),
                _ => (
                    NodeConfig::default(),
                    Some(format!("{error}; booting with defaults")),
                ),
            },
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => (NodeConfig::default(), None),
        Err(error) => (
            NodeConfig::default(),
            Some(format!(
                "cannot read {}: {error}; booting with defaults",
                path.display()
            )),
        ),
    }
}

/// The configuration without the keys that do not parse, and their names
/// (`[rpc] max_conections`, `module`, `[[mount]] 2`); None when the text is
/// not TOML at all. A table keeps every key of its own that parses, so a
/// typo beside `listen` never puts the node back on the default listeners;
/// an entry of an array of tables (`[[mount]]`) is kept without its bad
/// keys when it parses so, and left out whole when it does not (a mount
/// without its target).
fn salvage(text: &str) -> Option<(NodeConfig, Vec<String>)> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let mut kept = toml::Table::new();
    let mut dropped = Vec::new();
    for (key, value) in table {
        if wrapped(&key, value.clone()).is_none() {
            kept.insert(key, value);
            continue;
        }
        match value {
            toml::Value::Table(fields) => {
                let (good, bad) =
                    without_bad_keys(fields, |t| wrapped(&key, toml::Value::Table(t.clone())));
                match good {
                    Some(good) => {
                        dropped.extend(bad.iter().map(|field| format!("[{key}] {field}")));
                        kept.insert(key, toml::Value::Table(good));
                    }
                    None => dropped.push(format!("[{key}]")),
                }
            }
            toml::Value::Array(entries)
                if !entries.is_empty() && entries.iter().all(toml::Value::is_table) =>
            {
                let mut good_entries = Vec::new();
                for (at, entry) in entries.into_iter().enumerate() {
                    let toml::Value::Table(fields) = entry else {
                        continue;
                    };
                    let (good, bad) = without_bad_keys(fields, |t| {
                        wrapped(
                            &key,
                            toml::Value::Array(vec![toml::Value::Table(t.clone())]),
                        )
                    });
                    match good {
                        Some(good) => {
                            dropped.extend(
                                bad.iter()
                                    .map(|field| format!("[[{key}]] {} {field}", at + 1)),
                            );
                            good_entries.push(toml::Value::Table(good));
                        }
                        None => dropped.push(format!("[[{key}]] {}", at + 1)),
                    }
                }
                kept.insert(key, toml::Value::Array(good_entries));
            }
            _ => dropped.push(format!("`{key}`")),
        }
    }
    let config = kept.try_into::<NodeConfig>().ok()?;
    Some((config, dropped))
}

/// `value` as the only top-level `key` of spore.toml, written out as TOML:
/// None when that parses, else the error and the text it points into.
fn wrapped(key: &str, value: toml::Value) -> Option<(toml::de::Error, String)> {
    let mut alone = toml::Table::new();
    alone.insert(key.to_owned(), value);
    let text = toml::to_string(&alone).unwrap_or_default();
    toml::from_str::<NodeConfig>(&text)
        .err()
        .map(|error| (error, text))
}

/// `fields` with the keys the parser names as wrong removed one by one
/// (each error's span points at the key or its value), and those keys;
/// None for the table when it still does not parse without them (a
/// required key is missing, say).
fn without_bad_keys(
    mut fields: toml::Table,
    check: impl Fn(&toml::Table) -> Option<(toml::de::Error, String)>,
) -> (Option<toml::Table>, Vec<String>) {
    let mut bad = Vec::new();
    while let Some((error, text)) = check(&fields) {
        let start = error.span().map_or(0, |span| span.start);
        let line_start = text
            .get(..start)
            .and_then(|t| t.rfind('\n'))
            .map_or(0, |i| i + 1);
        let field = text
            .get(line_start..)
            .and_then(|line| line.split_once('='))
            .map(|(name, _)| name.trim().trim_matches('"').to_owned());
        match field {
            Some(field) if fields.remove(&field).is_some() => bad.push(field),
            _ => return (None, bad),
        }
    }
    (Some(fields), bad)
}

/// Parses spore.toml's `text`; the error names `path`, line, column, the
/// table, and the nearest key when one is misspelt.
pub fn parse(path: &Path, text: &str) -> Result<NodeConfig, String> {
    toml::from_str::<NodeConfig>(text).map_err(|error| located(path, text, &error))
}

/// Every error of spore.toml's `text` (as `spore check` reports them, as
/// cargo does: all at once), each located as [`parse`] locates one: after
/// each error the key it points at is blanked out (its line, and the
/// lines its value continues on; a whole table when the error is at its
/// header), and the text is read again. A syntax error ends the list: what
/// follows it cannot be read reliably.
pub fn errors(path: &Path, text: &str) -> Vec<String> {
    let mut text = text.to_owned();
    let mut found: Vec<((usize, usize), String)> = Vec::new();
    // Each round blanks at least one line, so this bound is never the limit
    // for a real file; it only keeps a pathological one finite.
    for _ in 0..100 {
        let Err(error) = toml::from_str::<NodeConfig>(&text) else {
            break;
        };
        let start = error.span().map_or(0, |span| span.start);
        let at = svc::position::LineIndex::new(&text).position(start);
        found.push(((at.line, at.column), located(path, &text, &error)));
        let syntax = toml::from_str::<toml::Table>(&text).is_err();
        let next = error.span().and_then(|span| blank_out(&text, span.start));
        match next {
            Some(next) if !syntax && next != text => text = next,
            _ => break,
        }
    }
    // In the file's order, as the reader goes through it.
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, message)| message).collect()
}

/// `text` with the entry at byte `at` replaced by blank lines (so every
/// other line keeps its number): a `key = value` line and its value's
/// continuation lines, or a `[table]` header and its keys.
fn blank_out(text: &str, at: usize) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut offset = 0;
    let mut first = None;
    for (index, line) in lines.iter().enumerate() {
        if at < offset + line.len() {
            first = Some(index);
            break;
        }
        offset += line.len();
    }
    let first = first.or_else(|| lines.len().checked_sub(1))?;
    let starts_entry = |line: &str| {
        let line = line.trim_start();
        line.is_empty() || line.starts_with('#') || line.starts_with('[') || line.contains('=')
    };
    let header = lines
        .get(first)
        .is_some_and(|l| l.trim_start().starts_with('['));
    let mut last = first;
    while let Some(line) = lines.get(last + 1) {
        let next_header = line.trim_start().starts_with('[');
        if (header && next_header) || (!header && starts_entry(line)) {
            break;
        }
        last += 1;
    }
    Some(
        lines
            .iter()
            .enumerate()
            .map(|(index, line)| {
                if (first..=last).contains(&index) {
                    "\n"
                } else {
                    line
                }
            })
            .collect(),
    )
}

fn located(path: &Path, text: &str, error: &toml::de::Error) -> String {
    let start = error.span().map_or(0, |span| span.start);
    let at = svc::position::LineIndex::new(text).position(start);
    let message = error.message().trim().to_owned();
    // serde says "unknown field `x`, expected one of `a`, `b`": say where,
    // and what was probably meant.
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let hint = match quoted.split_first() {
        Some((unknown, known)) if message.starts_with("unknown field") => {
            svc::suggest::nearest(unknown, known)
                .map(|near| format!("; did you mean `{near}`?"))
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    // The header of the table the error is in: the last one before its
    // position, or the one its own line is (an error about a whole table).
    let line_end = text
        .get(start..)
        .and_then(|rest| rest.find('\n'))
        .map_or(text.len(), |at| start + at);
    let table = text
        .get(..line_end)
        .unwrap_or_default()
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|header| format!(" in {header}"))
        .unwrap_or_default();
    format!(
        "{}:{}:{}: {message}{table}{hint}",
        path.display(),
        at.line,
        at.column
    )
}

/// Where things live on the node.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `/etc/spore`: spore.toml, services/, authorized_keys.
    pub config_dir: PathBuf,
    /// `/var/lib/spore`: node key, secrets.
    pub state_dir: PathBuf,
    /// The local control socket.
    pub socket: PathBuf,
}

impl Paths {
    /// spore.toml.
    pub fn node_config(&self) -> PathBuf {
        self.config_dir.join("spore.toml")
    }

    /// The image's service directory.
    pub fn services(&self) -> PathBuf {
        self.config_dir.join("services")
    }

    /// The deployed layer over it, on the state directory.
    pub fn deployed(&self) -> PathBuf {
        self.state_dir.join("services")
    }
}

/// Durations in spore.toml: an integer in the key's unit (milliseconds for
/// `…_ms`, seconds for `…_s`), or a time span (`"5s"`, `"1m30s"`:
/// [`svc::timespan`]).
mod span_ms {
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};

    /// A duration as a count of `unit_ms` milliseconds.
    struct Span {
        unit_ms: u64,
    }

    impl Visitor<'_> for Span {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let unit = if self.unit_ms == 1 {
                "milliseconds"
            } else {
                "seconds"
            };
            write!(f, "{unit} (an integer) or a time span like \"5s\"")
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
            Ok(n)
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
            u64::try_from(n).map_err(|_| E::custom("a duration cannot be negative"))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
            svc::timespan::parse(text)
                .map(|span| svc::timespan::millis(span) / self.unit_ms.max(1))
                .map_err(E::custom)
        }
    }

    /// A `…_ms` key with a default when absent (`#[serde(default)]` on its struct).
    pub fn required<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_any(Span { unit_ms: 1 })
    }

    /// An optional `…_ms` key (`#[serde(default)]` on the field).
    pub fn optional<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        deserializer.deserialize_any(Span { unit_ms: 1 }).map(Some)
    }

    /// An optional `…_s` key (`#[serde(default)]` on the field).
    pub fn optional_seconds<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        deserializer
            .deserialize_any(Span { unit_ms: 1_000 })
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses() {
        let config: NodeConfig = toml::from_str(
            "hostname = \"node-01\"\nmodules = [\"tun\", \"virtio_net\"]\n[network]\ninterface = \"eth0\"\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\n[rpc]\nlisten = [\"mycelium\"]\n",
        )
        .unwrap();
        assert_eq!(config.hostname.as_deref(), Some("node-01"));
        let networks = config.network.unwrap();
        let network = &networks.interfaces()[0];
        assert_eq!(
            network.address().unwrap(),
            Some(("10.0.2.15".parse().unwrap(), 24))
        );
        assert_eq!(network.gateway, Some("10.0.2.2".parse().unwrap()));
    }

    #[test]
    fn durations_take_milliseconds_or_time_spans() {
        let config = parse(
            Path::new("spore.toml"),
            "[rpc]\nhandshake_timeout_ms = \"5s\"\nsession_idle_timeout_ms = 90000\n[beacon]\nretry_max_ms = \"1m30s\"\nheartbeat_s = \"5min\"\n[control]\nidle_timeout_ms = \"2 min\"\n",
        )
        .unwrap();
        let rpc = config.rpc;
        assert_eq!(rpc.handshake_timeout_ms, Some(5_000));
        assert_eq!(rpc.session_idle_timeout_ms, Some(90_000));
        assert_eq!(config.beacon.retry_max_ms, Some(90_000));
        assert_eq!(config.beacon.heartbeat_s, Some(300));
        assert_eq!(config.control.idle_timeout_ms, 120_000);
        let error = parse(
            Path::new("spore.toml"),
            "[rpc]\nhandshake_timeout_ms = \"5\"\n",
        )
        .unwrap_err();
        assert!(
            error.starts_with("spore.toml:2:") && error.contains("no unit"),
            "{error}"
        );
    }

    #[test]
    fn check_reports_every_error_at_once_each_where_it_is() {
        let text = "hostname = \"n\"\n[rpc]\nlisten = [\n  \"mycelium\",\n]\nmax_conections = 8\nhandshake_timeout_ms = \"soon\"\n[control]\nmax_connections = \"many\"\n[[mount]]\nsource = \"/dev/vda\"\n[[mount]]\nsource = \"tmpfs\"\ntarget = \"/tmp\"\ntype = \"tmpfs\"\nflavour = 1\n";
        let errors = errors(Path::new("spore.toml"), text);
        let at: Vec<&str> = errors
            .iter()
            .map(|e| e.split(": ").next().unwrap_or_default())
            .collect();
        assert_eq!(
            at,
            [
                "spore.toml:6:1",
                "spore.toml:7:24",
                "spore.toml:9:19",
                "spore.toml:10:1",
                "spore.toml:16:1"
            ],
            "{errors:#?}"
        );
        assert!(
            errors[0].contains("did you mean `max_connections`?"),
            "{errors:#?}"
        );
        assert!(
            errors[3].contains("missing field `target` in [[mount]]"),
            "{errors:#?}"
        );
        // A good file has none; a syntax error is the last one reported.
        assert!(
            super::errors(Path::new("spore.toml"), "[rpc]\nlisten = [\"mycelium\"]\n").is_empty()
        );
        let broken = super::errors(Path::new("spore.toml"), "[rpc\nmax_conections = 8\n");
        assert_eq!(broken.len(), 1, "{broken:#?}");
    }

    #[test]
    fn several_interfaces_are_an_array_of_tables() {
        let config: NodeConfig = toml::from_str(
            "[[network]]\ninterface = \"eth0\"\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\n[[network]]\ninterface = \"eth1\"\naddress = \"192.168.100.2/24\"\n",
        )
        .unwrap();
        let names: Vec<&str> = config
            .network
            .as_ref()
            .unwrap()
            .interfaces()
            .iter()
            .map(|n| n.interface.as_str())
            .collect();
        assert_eq!(names, ["eth0", "eth1"]);
    }

    #[test]
    fn mount_tables_parse_and_bad_ones_say_why() {
        let config: NodeConfig = toml::from_str(
            "[[mount]]\nsource = \"/dev/vda\"\ntarget = \"/var/lib/spore\"\ntype = \"ext4\"\noptions = \"noatime,errors=remount-ro\"\n[[mount]]\nsource = \"tmpfs\"\ntarget = \"scratch\"\ntype = \"tmpfs\"\n",
        )
        .unwrap();
        assert_eq!(config.mount.len(), 2);
        assert_eq!(config.mount[0].fstype, "ext4");
        assert_eq!(config.mount[0].problem(), None);
        assert_eq!(
            config.mount[1].problem().unwrap(),
            "mount `tmpfs`: target `scratch` is not an absolute path"
        );
        let error = toml::from_str::<NodeConfig>(
            "[[mount]]\nsource = \"/dev/vda\"\ntarget = \"/x\"\nfstype = \"ext4\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("fstype"), "{error}");
    }

    #[test]
    fn a_typo_in_a_network_table_names_the_field() {
        for text in [
            "[network]\ninterface = \"eth0\"\nadress = \"10.0.2.15/24\"\n",
            "[[network]]\ninterface = \"eth0\"\nadress = \"10.0.2.15/24\"\n",
        ] {
            let error = toml::from_str::<NodeConfig>(text).unwrap_err().to_string();
            assert!(error.contains("adress"), "{error}");
        }
    }

    #[test]
    fn a_bad_table_is_left_out_with_a_located_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spore.toml");
        std::fs::write(&path, "hostname = \"n\"\nmodule = [\"tun\"]\n").unwrap();
        let (config, error) = load(&path);
        assert_eq!(config.hostname.as_deref(), Some("n"), "the rest applies");
        assert!(config.modules.is_empty());
        let error = error.unwrap();
        assert!(
            error.contains("spore.toml:2:1: unknown field `module`"),
            "{error}"
        );
        assert!(error.contains("did you mean `modules`?"), "{error}");
        assert!(
            error.contains("`module` left out, the rest applies"),
            "{error}"
        );
        // A typo in [rpc] leaves the network and the disks alone.
        std::fs::write(
            &path,
            "[rpc]\nlisten = [\"mycelium\"]\nmax_conections = 9\n[network]\ninterface = \"eth0\"\naddress = \"10.0.2.15/24\"\n",
        )
        .unwrap();
        let (config, error) = load(&path);
        assert!(config.network.is_some());
        // Only the typo goes: the listeners set beside it stay.
        assert_eq!(
            config.rpc.listen,
            Some(vec![Listen::Mycelium(DEFAULT_PORT)])
        );
        assert!(
            error
                .as_deref()
                .unwrap()
                .contains("[rpc] max_conections left out"),
            "{error:?}"
        );
        // In an array of tables, an entry keeps its good keys, and one that
        // cannot stand without the bad ones is left out alone.
        std::fs::write(
            &path,
            "[[mount]]\nsource = \"LABEL=a\"\ntarget = \"/var/lib\"\ntype = \"ext4\"\noptoins = \"noatime\"\n[[mount]]\nsource = \"LABEL=b\"\ntaget = \"/srv\"\ntype = \"ext4\"\n",
        )
        .unwrap();
        let (config, error) = load(&path);
        let error = error.unwrap();
        assert_eq!(config.mount.len(), 1, "{error}");
        assert_eq!(config.mount[0].target, std::path::PathBuf::from("/var/lib"));
        assert!(error.contains("[[mount]] 1 optoins"), "{error}");
        assert!(
            error.contains("[[mount]] 2,") || error.contains("[[mount]] 2 "),
            "{error}"
        );
        // Not TOML at all: defaults.
        std::fs::write(&path, "this is not toml\n").unwrap();
        let (config, error) = load(&path);
        assert_eq!(config, NodeConfig::default());
        assert!(error.unwrap().contains("booting with defaults"));
        let (config, error) = load(&dir.path().join("absent.toml"));
        assert_eq!((config, error), (NodeConfig::default(), None));
    }

    #[test]
    fn a_typo_in_rpc_is_reported_with_file_line_and_the_nearest_key() {
        let path = Path::new("/etc/spore/spore.toml");
        let text = "hostname = \"n\"\n[rpc]\nlisten = [\"mycelium\"]\nmax_conections = 10\n";
        let error = parse(path, text).unwrap_err();
        assert!(
            error.starts_with("/etc/spore/spore.toml:4:1: unknown field `max_conections`"),
            "{error}"
        );
        assert!(error.contains("in [rpc]"), "{error}");
        assert!(error.contains("did you mean `max_connections`?"), "{error}");
        let error = parse(path, "[beacon]\nurl = \"http://x\"\nheartbeat = 5\n").unwrap_err();
        assert!(
            error.contains(":3:1:") && error.contains("heartbeat_s"),
            "{error}"
        );
    }

    #[test]
    fn the_beacon_url_is_one_or_a_list_of_replicas() {
        let path = Path::new("spore.toml");
        let one = parse(path, "[beacon]\nurl = \"http://a/r\"\n").unwrap();
        assert_eq!(one.beacon.url, ["http://a/r"]);
        let two = parse(path, "[beacon]\nurl = [\"http://a/r\", \"http://b/r\"]\n").unwrap();
        assert_eq!(two.beacon.url, ["http://a/r", "http://b/r"]);
        let error = parse(path, "[beacon]\nurl = 5\n").unwrap_err();
        assert!(
            error.contains(":2:") && error.contains("a URL or a list of URLs"),
            "{error}"
        );
    }

    #[test]
    fn listen_entries_are_parsed_once() {
        let config = parse(
            Path::new("spore.toml"),
            "[rpc]\nlisten = [\"127.0.0.1:9999\", \"mycelium:7000\", \"mycelium\"]\n",
        )
        .unwrap();
        let listen = config.rpc.listen.clone().unwrap();
        assert_eq!(
            listen[0],
            Listen::Address("127.0.0.1:9999".parse().unwrap())
        );
        assert_eq!(listen[1], Listen::Mycelium(7000));
        assert_eq!(listen[2], Listen::Mycelium(9999));
        assert_eq!(config.rpc.announced_port(), 7000);
        let error = parse(
            Path::new("spore.toml"),
            "[rpc]\nlisten = [\"localhost:9\"]\n",
        )
        .unwrap_err();
        assert!(
            error.contains("spore.toml:2:") && error.contains("expected IP:PORT"),
            "{error}"
        );
    }

    #[test]
    fn addresses_need_a_valid_prefix() {
        let network = |a: &str| Network {
            interface: "eth0".into(),
            address: Some(a.into()),
            gateway: None,
        };
        assert!(network("10.0.0.1").address().is_err());
        assert!(network("10.0.0.1/33").address().is_err());
        assert!(network("fe80::1/64").address().is_err());
    }
}
