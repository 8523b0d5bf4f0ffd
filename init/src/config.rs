//! The node configuration, `/etc/spore/spore.toml`. Every table is typed and
//! refuses unknown keys (`FILE:LINE:COLUMN`, the nearest key). A bad key is
//! logged and only that key is left out, the rest of its table applies (a
//! typo in `[rpc]` must cost the node neither its network, nor its disks,
//! nor the listeners and limits set beside the typo); a file that is not
//! TOML, or missing, gives the defaults.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Deserialize;

mod bytes;
mod read;
mod span_ms;

pub use read::{errors, load};

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
    /// NTP servers the clock is set from (`[time]`).
    #[serde(default)]
    pub time: Time,
    /// The artifact store (`[artifacts]`).
    #[serde(default)]
    pub artifacts: Artifacts,
    /// In-place updates through the boot slots (`[update]`).
    #[serde(default)]
    pub update: Update,
    /// What the node says of itself beyond its name (`[node]`).
    #[serde(default)]
    pub node: Node,
}

/// `[node]`: what the node says of itself beyond its name.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Node {
    /// `labels = { rack = "3", role = "edge" }`: carried in every
    /// registration, so fleet commands select nodes by them (`sporectl
    /// --all --label rack=3`). At most [`MAX_LABELS`]; keys and values of
    /// letters, digits, `-`, `_` and `.`, at most 63 characters each.
    #[serde(deserialize_with = "labels")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The most labels a node carries.
pub const MAX_LABELS: usize = 32;

/// A label's key or value: 1 to 63 letters, digits, `-`, `_` or `.`.
fn label_word(text: &str) -> bool {
    (1..=63).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn labels<'de, D>(deserializer: D) -> Result<std::collections::BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let labels = std::collections::BTreeMap::<String, String>::deserialize(deserializer)?;
    if labels.len() > MAX_LABELS {
        return Err(D::Error::custom(format!(
            "{} labels; a node carries at most {MAX_LABELS}",
            labels.len()
        )));
    }
    for (key, value) in &labels {
        for (what, word) in [("key", key), ("value", value)] {
            if !label_word(word) {
                return Err(D::Error::custom(format!(
                    "label {what} `{}`: 1 to 63 letters, digits, `-`, `_` or `.`",
                    runtime::escape::field(word)
                )));
            }
        }
    }
    Ok(labels)
}

/// `[update]`: what `node.update` accepts and what confirms a new slot.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Update {
    /// Where the EFI system partition is mounted (default /boot/efi, as
    /// the example image mounts it).
    pub esp: PathBuf,
    /// `ssh-ed25519` public keys; when any is given, an update image and a
    /// spore binary for a live re-exec must carry an `ssh-keygen -Y sign
    /// -n spore-update` signature by one.
    pub keys: Vec<String>,
    /// How long a new slot has to pass its checks after spore starts on
    /// it (default 5 min); past it, the node reboots into the old slot.
    #[serde(deserialize_with = "span_ms::required")]
    pub confirm_within_ms: u64,
    /// Services that must be ready before a new slot is confirmed, besides
    /// those marked `critical = true` (default mycelium and call-home,
    /// whichever the node has; call-home's success is the beacon's
    /// acknowledgement).
    pub critical: Vec<String>,
    /// The hardware watchdog's timeout during a trial (`/dev/watchdog`,
    /// when the image loads its driver): a spore that hangs on the new
    /// slot resets the machine into the old one. Default 60 s; 0: none.
    #[serde(deserialize_with = "span_ms::required_seconds")]
    pub watchdog_s: u64,
}

impl Default for Update {
    fn default() -> Self {
        Self {
            esp: PathBuf::from("/boot/efi"),
            keys: Vec::new(),
            confirm_within_ms: 300_000,
            critical: vec!["mycelium".into(), "call-home".into()],
            watchdog_s: 60,
        }
    }
}

/// `[artifacts]`: the content-addressed store under `STATE_DIR/artifacts`,
/// and how the node fetches what its services pin.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Artifacts {
    /// The most it holds, verified and under way (bytes, or `"2G"`);
    /// default half of the state filesystem.
    #[serde(deserialize_with = "bytes::optional")]
    pub max_bytes: Option<u64>,
    /// The CA an https source's certificate must chain to; default the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// How long a fetch may wait for a connect or for the next bytes
    /// (default 30 s).
    #[serde(deserialize_with = "span_ms::required")]
    pub fetch_timeout_ms: u64,
}

impl Default for Artifacts {
    fn default() -> Self {
        Self {
            max_bytes: None,
            ca_file: None,
            fetch_timeout_ms: 30_000,
        }
    }
}

/// `[time]`: where the node's clock comes from (see [`crate::sntp`]).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Time {
    /// NTP servers, `HOST` or `HOST:PORT` (default port 123), asked in
    /// order; none: the clock stays as the hardware set it.
    pub servers: Vec<String>,
    /// Seconds between checks after boot (default 1024, NTP's longest
    /// poll; at least 16).
    #[serde(deserialize_with = "span_ms::required_seconds")]
    pub poll_s: u64,
}

impl Default for Time {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            poll_s: 1024,
        }
    }
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

/// Where things live on the node.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `/etc/spore`: spore.toml, services/, authorized_keys.
    pub config_dir: PathBuf,
    /// `/var/lib/spore`: node key, secrets.
    pub state_dir: PathBuf,
    /// The local control socket.
    pub socket: PathBuf,
    /// A cgroup2 directory delegated to spore (`spore run --cgroup`): each
    /// service runs in a cgroup of its own under it.
    pub cgroup: Option<PathBuf>,
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::read::parse;
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
    fn time_servers_and_their_poll_are_read() {
        let config = parse(
            Path::new("spore.toml"),
            "[time]\nservers = [\"10.0.2.2:11123\", \"pool.ntp.org\"]\npoll_s = \"10min\"\n",
        )
        .unwrap();
        assert_eq!(config.time.servers, ["10.0.2.2:11123", "pool.ntp.org"]);
        assert_eq!(config.time.poll_s, 600);
        assert_eq!(NodeConfig::default().time, Time::default());
        assert!(Time::default().servers.is_empty());
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
    fn labels_are_read_and_a_bad_one_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spore.toml");
        std::fs::write(
            &path,
            "hostname = \"n\"\n[node]\nlabels = { rack = \"3\", role = \"edge\" }\n",
        )
        .unwrap();
        let (config, error) = load(&path);
        assert_eq!(error, None);
        assert_eq!(
            config.node.labels.get("rack").map(String::as_str),
            Some("3")
        );
        assert_eq!(config.node.labels.len(), 2);
        std::fs::write(
            &path,
            "hostname = \"n\"\n[node]\nlabels = { rack = \"a b\" }\n",
        )
        .unwrap();
        let (config, error) = load(&path);
        let error = error.unwrap();
        assert!(error.contains("spore.toml:3:"), "{error}");
        assert!(error.contains("label value `a b`"), "{error}");
        assert!(config.node.labels.is_empty());
        assert_eq!(config.hostname.as_deref(), Some("n"), "the rest applies");
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
