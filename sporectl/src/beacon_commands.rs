//! sporectl's beacon commands: `nodes` (list, pending, approve, remove),
//! `artifact publish` and `beacon serve`.

use std::process::ExitCode;

use beacon::client::BeaconClient;
use rpc::client::ClientError;
use rpc::display::{printable, text};
use rpc::nodekey;
use serde_json::Value;

use crate::{confirm, identity, NodesAction, Options};

/// The beacon named by `--beacon`, checked (https, or http to loopback or
/// mycelium, or `--insecure-beacon`).
pub fn client(options: &Options) -> Result<BeaconClient, ClientError> {
    let url = options.beacon.as_deref().unwrap_or_default();
    Ok(BeaconClient::new(
        url,
        options.beacon_ca.clone(),
        options.insecure_beacon,
    )?)
}

/// `sporectl nodes [pending | approve NAME | hold NAME | remove NAME]`.
pub fn nodes(options: &Options, action: &NodesAction) -> Result<(), ClientError> {
    let beacon = client(options)?;
    match action {
        NodesAction::Approve { name, fingerprint } => {
            approve(options, &beacon, name, fingerprint.as_deref())
        }
        NodesAction::Remove { name: hostname } => {
            let id = identity(options)?;
            let order =
                beacon::admin::Order::signed("remove", hostname, "", &id, proto::rpc::unix_time())
                    .map_err(ClientError::Auth)?;
            let answer = beacon.order(&order)?;
            say!("{hostname}: removed ({} entries)", text(&answer, "entries"));
            Ok(())
        }
        NodesAction::Hold {
            name: hostname,
            fingerprint,
        } => {
            let id = identity(options)?;
            let fingerprint = fingerprint.clone().unwrap_or_default();
            let order = beacon::admin::Order::signed(
                "hold",
                hostname,
                &fingerprint,
                &id,
                proto::rpc::unix_time(),
            )
            .map_err(ClientError::Auth)?;
            let answer = beacon.order(&order)?;
            let until = answer.get("until").and_then(Value::as_u64).unwrap_or(0);
            say!(
                "{hostname}: {} pending entries held for {} h (until approved, removed or then)",
                text(&answer, "entries"),
                until.saturating_sub(proto::rpc::unix_time()).div_ceil(3600)
            );
            Ok(())
        }
        NodesAction::Pending => table(options, &beacon.pending()?, true),
        NodesAction::List => table(options, &beacon.nodes()?, false),
    }
}

fn approve(
    options: &Options,
    beacon: &BeaconClient,
    hostname: &str,
    wanted: Option<&str>,
) -> Result<(), ClientError> {
    let claims: Vec<String> = beacon
        .pending()?
        .iter()
        .filter(|r| r.pointer("/registration/hostname").and_then(Value::as_str) == Some(hostname))
        .map(|r| text(r, "fingerprint"))
        .collect();
    let fingerprint = match (wanted, claims.as_slice()) {
        (Some(wanted), _) if claims.iter().any(|c| c == wanted) => wanted.to_owned(),
        (Some(wanted), _) => {
            return Err(ClientError::Declined(format!(
                "no pending registration of {hostname} with key {wanted}"
            )))
        }
        (None, []) => {
            return Err(ClientError::Declined(format!(
                "no pending registration of {hostname} (sporectl nodes pending lists them)"
            )))
        }
        (None, [only]) => {
            confirm(
                &format!(
                    "approve {hostname} with node key {only}? (compare it with the node's console)"
                ),
                options.yes,
            )?;
            only.clone()
        }
        (None, several) => {
            return Err(ClientError::Declined(format!(
                "{} keys claim {hostname}: {}; choose one with --fingerprint",
                several.len(),
                several
                    .iter()
                    .map(|f| printable(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let id = identity(options)?;
    let order = beacon::admin::Order::signed(
        "approve",
        hostname,
        &fingerprint,
        &id,
        proto::rpc::unix_time(),
    )
    .map_err(ClientError::Auth)?;
    beacon.order(&order)?;
    say!("{hostname}: approved ({fingerprint})");
    Ok(())
}

/// The records as a table sized to its contents (or JSON); everything in
/// it came from the network and is escaped, so a record cannot forge a row
/// or send the terminal escape sequences.
fn table(options: &Options, records: &[Value], pending: bool) -> Result<(), ClientError> {
    if options.json {
        say!("{}", Value::Array(records.to_vec()));
        return Ok(());
    }
    let now = proto::rpc::unix_time();
    // What a person scans for first (name, when it was last heard from,
    // its version, how it got in) left; the long columns (key, overlay
    // address) last, where a narrow terminal cuts them.
    let mut rows = vec![[
        "HOSTNAME".to_owned(),
        "LAST SEEN".to_owned(),
        "VERSION".to_owned(),
        "SOURCE".to_owned(),
        if pending { "WAITING" } else { "ENROLLED BY" }.to_owned(),
        "PORT".to_owned(),
        "NODE KEY".to_owned(),
        "MYCELIUM ADDRESS".to_owned(),
    ]];
    for record in records {
        let r = record.get("registration").unwrap_or(&Value::Null);
        let key = r
            .get("hero_proc_auth_pubkey")
            .and_then(Value::as_str)
            .and_then(nodekey::parse_openssh_public)
            .map(|k| nodekey::fingerprint(&k))
            .unwrap_or_default();
        let age = |field: &str| {
            let seconds =
                now.saturating_sub(record.get(field).and_then(Value::as_u64).unwrap_or(0));
            format!("{} ago", rpc::display::age(seconds))
        };
        rows.push([
            printable(&text(r, "hostname")),
            age("last_seen"),
            printable(&version_and_slot(r)),
            printable(&text(record, "source")),
            if pending {
                let held = record
                    .get("held_until")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if held > now {
                    format!("{} (held)", age("first_seen"))
                } else {
                    age("first_seen")
                }
            } else {
                printable(&text(record, "enrolled_by"))
            },
            printable(&text(r, "hero_proc_port")),
            key,
            printable(&text(r, "mycelium_address")),
        ]);
    }
    let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    for line in rpc::display::fit(rpc::display::table(&rows), rpc::display::terminal_width()) {
        say!("{line}");
    }
    Ok(())
}

/// spore's version and build (the first 8 hex digits of its SHA-256,
/// when the registration says it), and the boot slot when the node has
/// slots: `0.1.0 3f0c9a1b slot b`, `… trying a` while an update is on
/// trial, `… (a reverted)` when the last one went back.
fn version_and_slot(registration: &Value) -> String {
    let mut version = text(registration, "spore_version");
    let build = text(registration, "build_id");
    if let Some(short) = build.get(..8) {
        version.push(' ');
        version.push_str(short);
    }
    let Some(boot) = registration.get("boot").filter(|b| b.is_object()) else {
        return version;
    };
    let mut out = format!("{version} slot {}", text(boot, "confirmed"));
    if let Some(trial) = boot.get("trial").and_then(Value::as_str) {
        out.push_str(&format!(", trying {trial}"));
    } else if let Some(last) = boot.get("last_update").filter(|l| l.is_object()) {
        if last.get("result").and_then(Value::as_str) == Some("reverted") {
            out.push_str(&format!(" ({} reverted)", text(last, "slot")));
        }
    }
    out
}

/// `sporectl beacon serve`'s options.
pub struct ServeOptions {
    /// Where to listen.
    pub listen: String,
    /// Where records are kept.
    pub data: std::path::PathBuf,
    /// Or this PostgreSQL database.
    pub store: Option<String>,
    /// Its password.
    pub store_password_file: Option<std::path::PathBuf>,
    /// The CA its TLS certificate must chain to.
    pub store_ca: Option<std::path::PathBuf>,
    /// The enrollment CA.
    pub enrollment_ca: Option<std::path::PathBuf>,
    /// Revoked credential key IDs.
    pub revoke: Vec<String>,
    /// Unknown nodes wait for approval.
    pub approve: bool,
    /// Every node is listed.
    pub open: bool,
    /// Admin keys for orders.
    pub authorized_keys: Option<std::path::PathBuf>,
    /// Enrolled nodes may rekey.
    pub allow_rekey: bool,
    /// Registrations per second per source.
    pub rate: f64,
    /// Their burst.
    pub burst: f64,
    /// Connections at once from one address.
    pub max_per_source: usize,
    /// Connections at once in all.
    pub max_connections: usize,
    /// https certificate chain.
    pub tls_cert: Option<std::path::PathBuf>,
    /// https key.
    pub tls_key: Option<std::path::PathBuf>,
    /// The artifact cache, if one is kept.
    pub artifacts: Option<beacon::cache::CacheSettings>,
}

/// Where `beacon serve` keeps its records. A password written into a
/// `--store` URL on the command line is refused: every user on the host
/// can read argv.
fn store_location(options: &ServeOptions) -> Result<beacon::Location, String> {
    let location = beacon::Location::choose(options.store.as_deref(), &options.data)?;
    if let beacon::Location::Postgres { url, .. } = &location {
        let from_environment = std::env::var("SPORECTL_BEACON_STORE").ok().as_ref() == Some(url);
        if !from_environment && beacon::store::has_password(url) {
            return Err(
                "--store: a password in the URL is readable by every user of this host (argv); use --store-password-file FILE or SPORECTL_BEACON_STORE".into(),
            );
        }
        return Ok(beacon::Location::Postgres {
            url: url.clone(),
            password_file: options.store_password_file.clone(),
            ca_file: options.store_ca.clone(),
        });
    }
    Ok(location)
}

/// `sporectl beacon serve`. Exits 2 for a local problem (a file that cannot
/// be read or used, a bad option, an address it cannot listen on), 1 when
/// the store cannot be opened.
pub fn serve(options: &ServeOptions) -> ExitCode {
    let fail_with = |code: u8, message: String| {
        complain!("sporectl: {message}");
        ExitCode::from(code)
    };
    let fail = |message: String| fail_with(2, message);
    let trust = match &options.enrollment_ca {
        Some(path) => match rpc::enrollment::Trust::from_file(path, options.revoke.clone()) {
            Ok(trust) => Some(trust),
            Err(error) => return fail(format!("--enrollment-ca {error}")),
        },
        None => None,
    };
    if !(options.rate > 0.0 && options.burst >= 1.0) {
        return fail("--rate must be above 0 and --burst at least 1".into());
    }
    if options.max_per_source == 0 || options.max_connections < options.max_per_source {
        return fail(
            "--max-per-source must be at least 1 and --max-connections at least --max-per-source"
                .into(),
        );
    }
    let tls = match (&options.tls_cert, &options.tls_key) {
        (Some(cert), Some(key)) => match beacon::tls::server_config(cert, key) {
            Ok(config) => Some(config),
            Err(error) => return fail(error.to_string()),
        },
        _ => None,
    };
    let cas = trust.as_ref().map_or(0, |t| t.len());
    let settings = beacon::Settings {
        policy: beacon::Policy {
            trust,
            approve: options.approve,
            open: options.open,
        },
        allow_rekey: options.allow_rekey,
        operators: options.authorized_keys.clone(),
        rate_per_second: options.rate,
        burst: options.burst,
        max_per_source: options.max_per_source,
        max_connections: options.max_connections,
        artifacts: options.artifacts.clone(),
        ..Default::default()
    };
    let location = match store_location(options) {
        Ok(location) => location,
        Err(error) => return fail(error),
    };
    let beacon = match beacon::Beacon::open(&location, settings) {
        Ok(beacon) => beacon,
        Err(error) => return fail_with(1, error.to_string()),
    };
    let listener = match std::net::TcpListener::bind(&options.listen)
        .and_then(smol::net::TcpListener::try_from)
    {
        Ok(listener) => listener,
        Err(error) => return fail(format!("cannot listen on {}: {error}", options.listen)),
    };
    let mut admits = Vec::new();
    if cas > 0 {
        admits.push(format!("credentials of {cas} enrollment CA(s)"));
    }
    if options.approve {
        admits.push("operators' approvals".to_owned());
    }
    if options.open {
        admits.push("every signed registration (--open)".to_owned());
    }
    if let Some(cache) = &options.artifacts {
        eprintln!(
            "beacon: keeps artifacts in {}{}",
            cache.dir.display(),
            match cache.peers.len() {
                0 => String::new(),
                n => format!(" (asks {n} peer(s) for what it lacks)"),
            }
        );
    }
    eprintln!(
        "beacon: listening on {}://{} (data in {}); lists nodes by {}",
        if tls.is_some() { "https" } else { "http" },
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        location.describe(),
        admits.join(" or ")
    );
    let executor: &'static smol::LocalExecutor<'static> =
        Box::leak(Box::new(smol::LocalExecutor::new()));
    smol::block_on(executor.run(beacon.serve(listener, tls, executor)));
    ExitCode::SUCCESS
}

/// `sporectl artifact publish FILE…`: each file to the beacon's cache.
pub fn publish(options: &Options, files: &[std::path::PathBuf]) -> Result<(), ClientError> {
    let beacon = client(options)?;
    let id = identity(options)?;
    for file in files {
        let file = file.display().to_string();
        publish_one(options, &beacon, &id, &file)?;
    }
    Ok(())
}

/// `sporectl artifact unpublish SHA256…`: each out of the beacon's cache.
/// A name the beacon does not hold is said, and the exit is 1.
pub fn unpublish(options: &Options, names: &[String]) -> Result<(), ClientError> {
    let beacon = client(options)?;
    let id = identity(options)?;
    let mut missing = Vec::new();
    for name in names {
        let digest = artifacts::Digest::parse(name)
            .map_err(|e| ClientError::Local(e.to_string()))?
            .hex();
        if beacon.unpublish(&digest, &id)? {
            say!("sha256:{digest}: removed from the beacon");
        } else {
            missing.push(format!("sha256:{digest}"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ClientError::Rpc {
            code: 404,
            message: format!("the beacon holds no {}", missing.join(", ")),
        })
    }
}

/// Publishes one file, with a progress line on a terminal; its source.
pub(crate) fn publish_one(
    options: &Options,
    beacon: &BeaconClient,
    id: &rpc::identity::Identity,
    file: &str,
) -> Result<rpc::upload::Source, ClientError> {
    let source = rpc::upload::Source::read(file).map_err(|e| ClientError::Local(e.to_string()))?;
    let size = source.size;
    let progress = crate::Progress::new(options, file, size);
    let published = beacon.publish(&source, id, &mut |sent| progress.show(sent));
    progress.clear();
    let (state, from) = match published? {
        beacon::client::Published::Held => ("held already", 0),
        beacon::client::Published::Stored { from } => ("published", from),
    };
    if options.json {
        say!(
            "{}",
            serde_json::json!({ "file": file, "sha256": source.digest.hex(), "size": size,
                                "state": state, "resumed_at": from })
        );
    } else if from > 0 {
        say!(
            "{}: {state} to the beacon as sha256:{} ({size} bytes; resumed at {from})",
            printable(file),
            source.digest
        );
    } else {
        say!(
            "{}: {state} to the beacon as sha256:{} ({size} bytes)",
            printable(file),
            source.digest
        );
    }
    Ok(source)
}
