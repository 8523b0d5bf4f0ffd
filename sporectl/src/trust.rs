//! Whom sporectl speaks as and whom it trusts: the keys it offers (the
//! agent's, `-i FILE`, ~/.ssh/id_ed25519), the node keys it pins in
//! known_nodes (`known-nodes list | forget`), and the questions it asks the
//! operator at the terminal before trusting a node or changing a fleet.

use std::path::PathBuf;

use rpc::client::{ClientError, Pin};
use rpc::identity::Identity;
use rpc::{nodekey, pins};
use serde_json::{json, Value};

use crate::{KnownNodesAction, Options};

/// Asks `question` on the terminal (not stdin: it may carry a secret);
/// `yes` answers it. Without a terminal, declines and says to add --yes.
pub(crate) fn confirm(question: &str, yes: bool) -> Result<(), ClientError> {
    if yes {
        return Ok(());
    }
    match ask_on_terminal(&format!("{question} [y/N] ")) {
        Some(answer) if matches!(answer.as_str(), "y" | "Y" | "yes" | "YES") => Ok(()),
        Some(_) => Err(ClientError::Declined(format!("{question} declined"))),
        None => Err(ClientError::Declined(format!(
            "{question} not confirmed (no terminal to ask; add --yes)"
        ))),
    }
}

/// The one signer for a beacon order: the first key [`identities`] offers.
pub(crate) fn identity(options: &Options) -> Result<Identity, ClientError> {
    identities(options)?
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Auth("no ssh-ed25519 key to sign with".into()))
}

/// The key the node must prove, and whether to record it: `--node-key`,
/// else its pin in known_nodes, else (first contact) any with
/// `--accept-new`, else, as ssh does, the key the node shows, once the
/// operator at the terminal accepted its fingerprint. Without a terminal a
/// first contact is refused, after the node was reached (an unreachable
/// node is exit 3 whatever was pinned).
pub(crate) async fn pin(options: &Options) -> Result<(Pin, bool), ClientError> {
    if let Some(text) = &options.node_key {
        let key = nodekey::parse_openssh_public(text).ok_or_else(|| {
            ClientError::Auth(format!(
                "--node-key `{text}` is not an ssh-ed25519 public key"
            ))
        })?;
        return Ok((Pin::Key(key), false));
    }
    if let Some(key) = pins::lookup(&options.known_nodes, &options.node) {
        return Ok((Pin::Key(key), false));
    }
    if options.accept_new {
        return Ok((Pin::AcceptAny, true));
    }
    let key = rpc::client::node_key(&options.node, options.connect_timeout).await?;
    let fingerprint = nodekey::fingerprint(&key);
    let question = format!(
        "The authenticity of node {} can't be established.\nIts ED25519 key fingerprint is {fingerprint}.\nThis key is not known by any other names.\nAre you sure you want to continue connecting (yes/no)? ",
        options.node
    );
    match ask_on_terminal(&question) {
        Some(answer) if matches!(answer.as_str(), "yes" | "y") => Ok((Pin::Key(key), true)),
        Some(_) => Err(ClientError::Declined(format!(
            "{}: node key {fingerprint} not accepted",
            options.node
        ))),
        None => Err(ClientError::Auth(format!(
            "{} ({fingerprint}) is not in {}; no terminal to ask: pin its key with --node-key or connect once with --accept-new",
            options.node,
            options.known_nodes.display()
        ))),
    }
}

/// Asks `question` on the controlling terminal (not stdin or stdout: they
/// may be a pipe); the answer trimmed, or None without a terminal.
fn ask_on_terminal(question: &str) -> Option<String> {
    use std::io::{BufRead, Write};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    let mut out = &tty;
    out.write_all(question.as_bytes()).ok()?;
    out.flush().ok()?;
    let mut answer = String::new();
    std::io::BufReader::new(&tty).read_line(&mut answer).ok()?;
    Some(answer.trim().to_owned())
}

/// The keys to offer, in ssh's order: `-i FILE` alone when given; else
/// every ssh-ed25519 key the agent holds (the one of ~/.ssh/id_ed25519.pub
/// first), then ~/.ssh/id_ed25519 itself unless the agent holds it.
pub(crate) fn identities(options: &Options) -> Result<Vec<Identity>, ClientError> {
    // A key that cannot be read or used is a local problem: nothing was
    // offered to the node yet.
    let auth = |e: rpc::identity::IdentityError| ClientError::Local(e.to_string());
    if let Some(path) = &options.identity {
        let agent = std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from);
        let identity = match agent {
            // `-i KEY.pub`, as ssh takes it: that key, from the agent.
            Some(socket) if path.extension().is_some_and(|e| e == "pub") => {
                Identity::from_agent_by_public(&socket, path)
            }
            _ => Identity::from_file(path),
        };
        return Ok(vec![identity.map_err(auth)?]);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let default_key = home.join(".ssh/id_ed25519");
    let preferred = std::fs::read_to_string(default_key.with_extension("pub"))
        .ok()
        .and_then(|line| ssh_key::PublicKey::from_openssh(line.trim()).ok());
    let mut offered = Vec::new();
    let mut agent_note = None;
    if let Some(socket) = std::env::var_os("SSH_AUTH_SOCK") {
        let socket = PathBuf::from(socket);
        match rpc::agent::Agent::connect(&socket).and_then(|mut a| a.ed25519_keys()) {
            Ok(mut keys) => {
                if let Some(p) = &preferred {
                    keys.sort_by_key(|k| k.key_data() != p.key_data());
                }
                if keys.is_empty() {
                    agent_note = Some("the agent holds no ssh-ed25519 key".to_owned());
                }
                offered.extend(keys.into_iter().map(|key| Identity::Agent {
                    socket: socket.clone(),
                    key,
                }));
            }
            Err(error) => agent_note = Some(format!("ssh-agent: {error}")),
        }
    }
    let in_agent = offered.iter().any(|i| {
        preferred
            .as_ref()
            .is_some_and(|p| i.public().key_data() == p.key_data())
    });
    if !in_agent && default_key.exists() {
        match Identity::from_file(&default_key) {
            Ok(identity) => offered.push(identity),
            Err(error) if offered.is_empty() => return Err(auth(error)),
            Err(error) => eprintln!("sporectl: skipping {}: {error}", default_key.display()),
        }
    }
    if offered.is_empty() {
        return Err(ClientError::Local(format!(
            "no ssh-ed25519 key in the agent{} or at {}; make one with ssh-keygen -t ed25519, or give one with -i FILE",
            agent_note.map(|n| format!(" ({n})")).unwrap_or_default(),
            default_key.display()
        )));
    }
    Ok(offered)
}

/// `sporectl known-nodes list | forget ADDRESS`.
pub(crate) fn known_nodes(options: &Options, action: &KnownNodesAction) -> Result<(), ClientError> {
    let file = &options.known_nodes;
    let local = |e: std::io::Error| ClientError::Local(format!("{}: {e}", file.display()));
    match action {
        KnownNodesAction::Forget { address } => {
            let gone = pins::forget(file, address).map_err(local)?;
            if gone == 0 {
                return Err(ClientError::Local(format!(
                    "{address} is not pinned in {}",
                    file.display()
                )));
            }
            say!("{address}: forgotten; the next connection needs --accept-new or --node-key");
        }
        KnownNodesAction::List => {
            let pins = pins::list(file).map_err(local)?;
            if options.json {
                let rows: Vec<Value> = pins
                    .iter()
                    .map(|(a, k)| json!({ "address": a, "fingerprint": nodekey::fingerprint(k), "key": nodekey::openssh_public(k) }))
                    .collect();
                say!("{}", Value::Array(rows));
            } else {
                for (address, key) in &pins {
                    say!("{address}  {}", nodekey::fingerprint(key));
                }
            }
        }
    }
    Ok(())
}
