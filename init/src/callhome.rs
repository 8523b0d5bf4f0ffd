//! `spore call-home`: the built-in call-home service (no curl, no shell).
//! Settings come from `[beacon]` in spore.toml; `CALL_HOME_URL` in the
//! environment (the seed's variable) overrides the URLs.

use std::process::ExitCode;
use std::time::Duration;

use rpc::callhome::{run, Settings};
use rpc::nodekey::NodeKey;
use runtime::journal;

use crate::config::Paths;

/// Runs call-home until it is accepted (and then heartbeats, if set).
pub fn main(paths: &Paths) -> ExitCode {
    let (config, error) = crate::config::load(&paths.node_config());
    if let Some(error) = error {
        journal::note(error);
    }
    let beacon = &config.beacon;
    // CALL_HOME_URL may list several, separated by commas or spaces.
    let beacon_urls: Vec<String> = match std::env::var("CALL_HOME_URL") {
        Ok(urls) => urls
            .split([',', ' '])
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect(),
        Err(_) => beacon.url.clone(),
    };
    // A beacon's base URL (as sporectl --beacon takes it) registers at its
    // registration path.
    let beacon_urls: Vec<String> = beacon_urls
        .iter()
        .map(|url| rpc::callhome::registration_url(url))
        .collect();
    if beacon_urls.is_empty() {
        eprintln!(
            "spore call-home: no beacon URL: set url in [beacon] of spore.toml or CALL_HOME_URL"
        );
        return ExitCode::from(2);
    }
    let hostname = config.hostname.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
    });
    let settings = Settings {
        beacon_urls,
        mycelium_api: beacon
            .mycelium_api
            .clone()
            .unwrap_or_else(|| crate::remote::MYCELIUM_API.into()),
        hostname,
        rpc_port: config.rpc.announced_port(),
        heartbeat: beacon
            .heartbeat_s
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
        allow_insecure_http: beacon.allow_insecure_http,
        ca_file: beacon.ca_file.clone(),
        // The image builder puts the credential at CONFIG_DIR/enrollment_key;
        // a path set in [beacon] must exist.
        enrollment_key: Some(match &beacon.enrollment_key {
            Some(path) => (path.clone(), true),
            None => (paths.config_dir.join("enrollment_key"), false),
        }),
        first_delay: Duration::from_millis(beacon.retry_first_ms.unwrap_or(1_000).max(1)),
        max_delay: Duration::from_millis(beacon.retry_max_ms.unwrap_or(300_000).max(1)),
        extra: {
            let mut extra = crate::update::registration_fields(&paths.state_dir);
            if !config.node.labels.is_empty() {
                extra.insert("labels".into(), serde_json::json!(config.node.labels));
            }
            extra
        },
        refresh: Some(supervisor_build),
    };
    let key = match NodeKey::load_or_generate(&paths.state_dir.join("node_key")) {
        Ok((key, _)) => key,
        Err(error) => {
            eprintln!("spore call-home: node key: {error}");
            return ExitCode::from(1);
        }
    };
    match run(&settings, &key, &mut |line| eprintln!("call-home: {line}")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("spore call-home: {error}");
            ExitCode::from(2)
        }
    }
}

/// The build of the spore that supervises this call-home, for every
/// registration (`build_id`: the SHA-256 of the binary its parent runs;
/// after a live re-exec, the new one). Hashed again only when that file
/// is another (device, inode, size, time).
fn supervisor_build() -> std::collections::BTreeMap<String, serde_json::Value> {
    use std::os::unix::fs::MetadataExt;
    use std::sync::Mutex;
    type Seen = Option<((u64, u64, u64, i64), String)>;
    static SEEN: Mutex<Seen> = Mutex::new(None);
    let supervisor = format!("/proc/{}/exe", std::os::unix::process::parent_id());
    let path = std::path::Path::new(&supervisor);
    let mut fields = std::collections::BTreeMap::new();
    // Not readable (another user's spore, which is not dumpable): the
    // registration goes without it.
    let Ok(meta) = std::fs::metadata(path) else {
        return fields;
    };
    let identity = (meta.dev(), meta.ino(), meta.size(), meta.mtime());
    let Ok(mut seen) = SEEN.lock() else {
        return fields;
    };
    let hex = match &*seen {
        Some((known, hex)) if *known == identity => hex.clone(),
        _ => match artifacts::Digest::of_file(path) {
            Ok(digest) => {
                let hex = digest.hex();
                *seen = Some((identity, hex.clone()));
                hex
            }
            Err(_) => return fields,
        },
    };
    fields.insert("build_id".into(), serde_json::json!(hex));
    fields
}
