//! `sporectl rollout deploy FILE…` and `rollout update --spore BINARY`:
//! a change to a fleet in steps. The
//! canary first, then batches of `--max-parallel` nodes; each node counts
//! healthy only when every service of the change came up within
//! `--healthy-deadline` and was still ready, without a restart,
//! `--min-healthy-time` later. A node that does not answer is unhealthy,
//! not skipped. More failures than `--max-failures` stop the rollout; with
//! `--auto-revert` the batch that failed goes back to what it had (each
//! service's previous file, read with `service.definition` before the
//! change, or no service where there was none; for a new spore binary,
//! the binary each node ran before, see [`spore`]). Nodes of later
//! batches are never touched.
//!
//! This driver runs in the operator's sporectl: the state lives in this
//! process for now (the rollout at the beacon, resumable from anywhere, is
//! the next step).

mod plan;
mod services;
pub(crate) mod spore;

use std::rc::Rc;
use std::time::Duration;

use rpc::client::{ClientError, Pin};
use rpc::identity::Identity;
use serde_json::{json, Value};

pub(crate) use plan::Parallel;
use services::{change_node, deploy_params, read_changes, remove_node, Before, Change};
pub(crate) use services::{RemoveSettings, Settings};

use crate::{call_within, confirm, connect_with_any, identities, Options};

/// A rollout as its command line asks for it.
#[derive(Debug)]
pub(crate) enum Rollout {
    /// `rollout deploy FILE…`.
    Deploy(Settings),
    /// `rollout update --spore BINARY`.
    Spore(spore::Settings),
    /// `rollout remove NAME…`.
    Remove(RemoveSettings),
}

/// How a rollout of any change goes: its batches, its health gates, what
/// stops it and what it does then.
#[derive(clap::Args, Debug)]
pub(crate) struct Gates {
    /// Change this many nodes first, alone; the rest follow once they
    /// are healthy and the rollout is promoted (asked on the terminal,
    /// or --auto-promote, or --yes)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) canary: usize,
    /// Nodes changed at a time after the canary: a number or a share
    /// of the fleet (25%)
    #[arg(long, value_name = "N|P%", default_value = "25%", value_parser = Parallel::parse)]
    pub(crate) max_parallel: Parallel,
    /// How long each changed service must stay ready, without a
    /// restart, for its node to count healthy
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = rpc::verbs::parse_duration)]
    pub(crate) min_healthy_time: Duration,
    /// How long each changed service may take to come up
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = rpc::verbs::parse_duration)]
    pub(crate) healthy_deadline: Duration,
    /// Failed nodes tolerated before the rollout stops
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) max_failures: usize,
    /// When it stops, put the batch that failed back as it was (each
    /// service's previous file, or no service where there was none)
    #[arg(long)]
    pub(crate) auto_revert: bool,
    /// Go on after a healthy canary without asking
    #[arg(long)]
    pub(crate) auto_promote: bool,
}

/// What the rollout changes.
enum What {
    /// Service files deployed.
    Services(Rc<Vec<Change>>),
    /// A spore binary exec'd in place.
    Spore(Rc<spore::Binary>),
    /// Services removed.
    Removal(Rc<Vec<String>>),
}

/// What a node had before the change, to put it back.
enum Undo {
    /// Each service of the change as it was (in change order), for those
    /// the node had been asked to change.
    Services(Vec<(String, Before)>),
    /// The node was asked to exec the new binary; `went_back`: it could
    /// not take the state up and its old binary runs again by itself.
    Spore { asked: bool, went_back: bool },
}

/// One node's part in a batch.
struct Step {
    /// The node: hostname, address, pinned key.
    target: Target,
    /// What to put back.
    undo: Undo,
    /// Healthy, or why not.
    outcome: Result<(), String>,
}

/// A node of the fleet: hostname, address, pinned key.
type Target = (String, String, Pin);

/// Prints an event: a line of text, or with `--json` one JSON document.
fn event(options: &Options, line: &str, document: Value) {
    if options.json {
        say!("{document}");
    } else {
        say!("{line}");
    }
}

/// Runs the rollout; exit status 0 when every node took the change and
/// stayed healthy, 1 when it stopped.
pub(crate) async fn run(options: &Options, rollout: &Rollout) -> Result<u8, ClientError> {
    let (what, settings) = match rollout {
        Rollout::Deploy(deploy) => (
            What::Services(Rc::new(read_changes(&deploy.files)?)),
            &deploy.gates,
        ),
        Rollout::Spore(spore) => (
            What::Spore(Rc::new(spore::Binary::read(spore)?)),
            &spore.gates,
        ),
        Rollout::Remove(remove) => (What::Removal(Rc::new(remove.names.clone())), &remove.gates),
    };
    let (mut targets, channel) = crate::fleet::targets(options)?;
    if channel == beacon::client::Channel::Unauthenticated {
        return Err(ClientError::Declined(format!(
            "refusing a rollout to nodes whose keys came over plain http from {} (--insecure-beacon): use https or a loopback beacon",
            options.beacon.as_deref().unwrap_or_default()
        )));
    }
    targets.sort_by(|a, b| a.0.cmp(&b.0));
    let batches = plan::batches(targets.len(), settings.canary, settings.max_parallel);
    let (names, gate): (Vec<String>, &str) = match &what {
        What::Services(changes) => (changes.iter().map(|c| c.name.clone()).collect(), "ready"),
        What::Removal(names) => (
            names
                .iter()
                .map(|n| format!("the removal of {n}"))
                .collect(),
            "gone",
        ),
        What::Spore(binary) => (
            vec![binary.describe()],
            "answering from it with every service kept",
        ),
    };
    event(
        options,
        &format!(
            "rollout of {} to {} node(s) in {} batch(es){}: healthy once {gate} within {} s and still so {} s later; stops after {} failed node(s){}",
            names.join(", "),
            targets.len(),
            batches.len(),
            if batches.first().is_some_and(|b| b.canary) {
                format!(", the first {} a canary", settings.canary.min(targets.len()))
            } else {
                String::new()
            },
            settings.healthy_deadline.as_secs(),
            settings.min_healthy_time.as_secs(),
            settings.max_failures + 1,
            if settings.auto_revert { ", and reverts the batch that failed" } else { "" }
        ),
        json!({ "event": "planned", "services": names, "nodes": targets.len(), "batches": batches.len() }),
    );
    let identities = Rc::new(identities(options)?);
    let mut failed_total = 0usize;
    let mut changed_nodes = 0usize;
    for (index, batch) in batches.iter().enumerate() {
        let members: Vec<Target> = targets
            .get(batch.nodes.clone())
            .map(<[Target]>::to_vec)
            .unwrap_or_default();
        let hostnames: Vec<&str> = members.iter().map(|(h, _, _)| h.as_str()).collect();
        event(
            options,
            &format!(
                "batch {}/{}{}: {}",
                index + 1,
                batches.len(),
                if batch.canary { " (canary)" } else { "" },
                hostnames.join(" ")
            ),
            json!({ "event": "batch", "batch": index + 1, "canary": batch.canary, "nodes": hostnames }),
        );
        let steps = batch_of(options, settings, &identities, &what, &members).await;
        changed_nodes += steps.len();
        let mut failed_here = Vec::new();
        for step in &steps {
            let (word, reason) = match &step.outcome {
                Ok(()) => ("healthy", None),
                Err(reason) => ("FAILED", Some(reason.as_str())),
            };
            event(
                options,
                &format!(
                    "  {}  {word}{}",
                    step.target.0,
                    reason.map(|r| format!("  {r}")).unwrap_or_default()
                ),
                json!({ "event": "node", "batch": index + 1, "node": step.target.0, "healthy": reason.is_none(), "reason": reason }),
            );
            if let Err(reason) = &step.outcome {
                failed_here.push(format!("{}: {reason}", step.target.0));
            }
        }
        failed_total += failed_here.len();
        let last = index + 1 == batches.len();
        let stop_reason = if plan::stops(failed_total, settings.max_failures) {
            Some(format!(
                "{failed_total} node(s) failed, more than --max-failures {} ({})",
                settings.max_failures,
                failed_here.join("; ")
            ))
        } else if batch.canary && !last && !settings.auto_promote {
            let rest = targets.len().saturating_sub(batch.nodes.end);
            confirm(
                &format!("the canary is healthy: promote the rollout to the other {rest} node(s)?"),
                options.yes,
            )
            .err()
            .map(|declined| format!("not promoted: {declined}"))
        } else {
            None
        };
        if let Some(reason) = stop_reason {
            event(
                options,
                &format!("rollout stopped at batch {}: {reason}", index + 1),
                json!({ "event": "stopped", "batch": index + 1, "reason": reason }),
            );
            let reverted = if settings.auto_revert {
                revert(options, settings, &identities, steps).await
            } else {
                0
            };
            let untouched = targets.len().saturating_sub(changed_nodes);
            event(
                options,
                &format!(
                    "rollout failed: {changed_nodes} node(s) changed, {reverted} of them reverted, {untouched} untouched"
                ),
                json!({ "event": "done", "completed": false, "changed": changed_nodes, "reverted": reverted, "untouched": untouched }),
            );
            return Ok(1);
        }
    }
    event(
        options,
        &format!(
            "rollout complete: {} node(s) healthy{}",
            changed_nodes - failed_total,
            if failed_total > 0 {
                format!(", {failed_total} failed (within --max-failures)")
            } else {
                String::new()
            }
        ),
        json!({ "event": "done", "completed": true, "changed": changed_nodes, "failed": failed_total }),
    );
    Ok(0)
}

/// Changes every node of a batch at once and waits for each to prove
/// healthy (or not).
async fn batch_of(
    options: &Options,
    settings: &Gates,
    identities: &Rc<Vec<Identity>>,
    what: &What,
    members: &[Target],
) -> Vec<Step> {
    let executor = smol::LocalExecutor::new();
    let tasks: Vec<_> = members
        .iter()
        .cloned()
        .map(|target| {
            let identities = identities.clone();
            let what = match what {
                What::Services(changes) => What::Services(changes.clone()),
                What::Removal(names) => What::Removal(names.clone()),
                What::Spore(binary) => What::Spore(binary.clone()),
            };
            let connect_timeout = options.connect_timeout;
            let call_timeout = options.call_timeout;
            let (deadline, healthy_time) = (settings.healthy_deadline, settings.min_healthy_time);
            executor.spawn(async move {
                let gate = Gate {
                    deadline,
                    healthy_time,
                    connect_timeout,
                    call_timeout,
                };
                let (outcome, undo) = match &what {
                    What::Services(_) | What::Removal(_) => {
                        let mut before = Vec::new();
                        let outcome = async {
                            let (_, address, pin) = &target;
                            let mut session =
                                connect_with_any(address, &identities, pin, connect_timeout)
                                    .await
                                    .map_err(|e| e.to_string())?;
                            match &what {
                                What::Services(changes) => {
                                    change_node(&mut session, changes, &mut before, &gate).await
                                }
                                What::Removal(names) => {
                                    remove_node(&mut session, names, &mut before, &gate).await
                                }
                                What::Spore(_) => Ok(()),
                            }
                        }
                        .await;
                        (outcome, Undo::Services(before))
                    }
                    What::Spore(binary) => {
                        let mut undo = Undo::Spore {
                            asked: false,
                            went_back: false,
                        };
                        let outcome =
                            spore::change_node(&target, &identities, binary, &gate, &mut undo)
                                .await;
                        (outcome, undo)
                    }
                };
                Step {
                    target,
                    undo,
                    outcome,
                }
            })
        })
        .collect();
    executor
        .run(async {
            let mut steps = Vec::with_capacity(tasks.len());
            for task in tasks {
                steps.push(task.await);
            }
            steps
        })
        .await
}

/// A node's health gate and the timeouts of its calls.
struct Gate {
    /// How long the change may take to come up.
    deadline: Duration,
    /// How long it must then stay up.
    healthy_time: Duration,
    /// `--connect-timeout`.
    connect_timeout: Duration,
    /// `--call-timeout`.
    call_timeout: Duration,
}

/// Puts every node of the batch back as it was before the change: each
/// service's previous file deployed again, or removed where it had none.
/// Returns how many nodes were put back.
async fn revert(
    options: &Options,
    settings: &Gates,
    identities: &Rc<Vec<Identity>>,
    steps: Vec<Step>,
) -> usize {
    let executor = smol::LocalExecutor::new();
    let tasks: Vec<_> = steps
        .into_iter()
        .map(|step| {
            let identities = identities.clone();
            let connect_timeout = options.connect_timeout;
            let call_timeout = options.call_timeout;
            let deadline = settings.healthy_deadline;
            executor.spawn(async move {
                let gate = Gate {
                    deadline,
                    healthy_time: Duration::ZERO,
                    connect_timeout,
                    call_timeout,
                };
                let before = match step.undo {
                    Undo::Services(before) => before,
                    Undo::Spore { asked, went_back } => {
                        let outcome =
                            spore::revert(&step.target, &identities, asked, went_back, &gate).await;
                        return (step.target.0, outcome);
                    }
                };
                let (hostname, address, pin) = step.target;
                let outcome = async {
                    let mut session =
                        connect_with_any(&address, &identities, &pin, connect_timeout)
                            .await
                            .map_err(|e| e.to_string())?;
                    // Last changed, first put back.
                    for (name, was) in before.iter().rev() {
                        let (method, params) = match was {
                            Before::File { file, text } => (
                                proto::method::Method::ServiceDeploy.name(),
                                deploy_params(text, file, deadline),
                            ),
                            Before::Absent => (
                                proto::method::Method::ServiceRemove.name(),
                                json!({ "name": name }),
                            ),
                        };
                        call_within(&mut session, method, params, deadline + call_timeout)
                            .await
                            .map_err(|e| format!("{name}: {e}"))?;
                    }
                    Ok::<(), String>(())
                }
                .await;
                (hostname, outcome)
            })
        })
        .collect();
    let outcomes = executor
        .run(async {
            let mut all = Vec::with_capacity(tasks.len());
            for task in tasks {
                all.push(task.await);
            }
            all
        })
        .await;
    let mut reverted = 0;
    for (hostname, outcome) in outcomes {
        let reason = outcome.as_ref().err().map(String::as_str);
        reverted += usize::from(reason.is_none());
        event(
            options,
            &match reason {
                None => format!("  {hostname}  reverted"),
                Some(reason) => format!("  {hostname}  NOT REVERTED  {reason}"),
            },
            json!({ "event": "reverted", "node": hostname, "ok": reason.is_none(), "reason": reason }),
        );
    }
    reverted
}
