//! `spore call-home`: the built-in call-home service (no curl, no shell).
//! Settings come from `[beacon]` in spore.toml; `CALL_HOME_URL` in the
//! environment (the seed's variable) overrides the URL.

use std::process::ExitCode;
use std::time::Duration;

use rpc::callhome::{run, Settings};
use rpc::nodekey::NodeKey;
use runtime::journal;

use crate::config::{NodeConfig, Paths};

/// The RPC port announced: the `mycelium:PORT` listen entry, else 9999.
fn rpc_port(config: &NodeConfig) -> u16 {
    config
        .rpc
        .as_ref()
        .and_then(|rpc| rpc.get("listen"))
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.as_str())
        .find_map(|entry| entry.strip_prefix("mycelium:").and_then(|p| p.parse().ok()))
        .unwrap_or(crate::remote::DEFAULT_PORT)
}

/// Runs call-home until it is accepted (and then heartbeats, if set).
pub fn main(paths: &Paths) -> ExitCode {
    let (config, error) = crate::config::load(&paths.node_config());
    if let Some(error) = error {
        journal::note(error);
    }
    let beacon = config.beacon.clone().unwrap_or_default();
    let text = |key: &str| beacon.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let number = |key: &str| {
        beacon
            .get(key)
            .and_then(|v| v.as_integer())
            .and_then(|n| u64::try_from(n).ok())
    };
    let Some(beacon_url) = std::env::var("CALL_HOME_URL").ok().or_else(|| text("url")) else {
        eprintln!(
            "spore call-home: no beacon URL: set url in [beacon] of spore.toml or CALL_HOME_URL"
        );
        return ExitCode::from(2);
    };
    let hostname = config.hostname.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
    });
    let settings = Settings {
        beacon_url,
        mycelium_api: text("mycelium_api").unwrap_or_else(|| crate::remote::MYCELIUM_API.into()),
        hostname,
        rpc_port: rpc_port(&config),
        heartbeat: number("heartbeat_s")
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
        allow_insecure_http: beacon.get("allow_insecure_http").and_then(|v| v.as_bool())
            == Some(true),
        ca_file: text("ca_file").map(std::path::PathBuf::from),
        // The image builder puts the credential at CONFIG_DIR/enrollment_key;
        // a path set in [beacon] must exist.
        enrollment_key: Some(match text("enrollment_key") {
            Some(path) => (std::path::PathBuf::from(path), true),
            None => (paths.config_dir.join("enrollment_key"), false),
        }),
        first_delay: Duration::from_millis(number("retry_first_ms").unwrap_or(1_000).max(1)),
        max_delay: Duration::from_millis(number("retry_max_ms").unwrap_or(300_000).max(1)),
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
