//! The trial boot of a new slot: every critical service ready within
//! `[update] confirm_within_ms` confirms it; anything else records why and
//! reboots into the old slot. A watchdog, when the machine has one, covers
//! a hang meanwhile.

use std::path::Path;
use std::time::{Duration, Instant};

use bootslots::{Record, SlotError, Slots, Trial};
use runtime::journal;
use serde_json::Value;

use super::{facts_of, now, short, Host, Settings, RECHECK, VERSION, WATCHDOG};

/// The services that must be ready to confirm: those marked critical and
/// those `[update] critical` names, of the ones this node has.
fn critical_services(node: &impl Host, settings: &Settings) -> Vec<String> {
    node.with_api(|api| {
        let mut names: Vec<String> = api
            .supervisor()
            .services()
            .into_iter()
            .filter(|s| s.critical || settings.critical.contains(&s.name))
            .map(|s| s.name.clone())
            .collect();
        names.sort();
        names
    })
    .unwrap_or_default()
}

/// Waits until `name` is ready or `deadline` passes; a failure is asked
/// after again (a restart may still make it) until then. Err: why not.
async fn ready_by(node: &impl Host, name: &str, deadline: Instant) -> Result<(), String> {
    let mut last = String::from("not started");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{name} was not ready in time (last: {last})"));
        }
        let (answer, pending) = smol::channel::bounded(1);
        node.with_api(|api| api.wait_for(name, left, answer));
        let word = |value: &Value, key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned()
        };
        match nodeapi::api::settle(&pending).await {
            Ok(value) if word(&value, "outcome") == "ready" => return Ok(()),
            Ok(value) => {
                last = word(&value, "state");
                if word(&value, "outcome") == "timeout" {
                    return Err(format!("{name} was not ready in time (last: {last})"));
                }
                smol::Timer::after(RECHECK.min(left)).await;
            }
            Err(error) => return Err(format!("{name}: {}", error.message)),
        }
    }
}

/// Each of `names` that is not ready (nor a oneshot that succeeded), with
/// its state in words.
fn not_ready(node: &impl Host, names: &[String]) -> Vec<String> {
    node.with_api(|api| {
        let now = Instant::now();
        names
            .iter()
            .filter_map(|name| {
                let view = api.get(name)?;
                (!view.state.is_ready()).then(|| format!("{name} {}", view.state.describe(now)))
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The trial: every critical service ready within `confirm_within_ms`
/// confirms the slot; anything else records why and reboots into the old
/// one.
pub(super) async fn decide_trial(
    node: &impl Host,
    executor: &'static smol::LocalExecutor<'static>,
    settings: &Settings,
    slots: Slots,
    trial: Trial,
) {
    let within = Duration::from_millis(settings.confirm_within_ms);
    // Armed for the trial only: a hang from here on resets the machine
    // into the old slot.
    let (disarm, trial_over) = smol::channel::bounded::<()>(1);
    let keeper = if settings.watchdog_s == 0 {
        None
    } else {
        let seconds = u32::try_from(settings.watchdog_s).unwrap_or(u32::MAX);
        match crate::watchdog::Watchdog::arm(Path::new(WATCHDOG), seconds) {
            Ok(dog) => {
                journal::note(format_args!(
                    "watchdog {WATCHDOG} armed for the trial ({} s)",
                    dog.timeout.as_secs()
                ));
                Some(executor.spawn(crate::watchdog::keep_alive(dog, trial_over)))
            }
            Err(reason) => {
                journal::note(format_args!(
                    "no watchdog for the trial ({reason}): a hang on the new slot needs a power cycle to revert"
                ));
                None
            }
        }
    };
    let deadline = Instant::now() + within;
    let critical = critical_services(node, settings);
    journal::note(format_args!(
        "update on trial: slot {} (image {}, from spore {}); confirmed once {} {} ready, within {} s",
        trial.slot.letter(),
        short(&trial.sha256),
        trial.from_version,
        if critical.is_empty() { "spore".to_owned() } else { critical.join(", ") },
        if critical.len() == 1 || critical.is_empty() { "is" } else { "are" },
        within.as_secs()
    ));
    let mut failure = None;
    for name in &critical {
        if let Err(reason) = ready_by(node, name, deadline).await {
            // Say where every one not ready stands, so the reason names
            // the service that held the others (call-home waits for
            // mycelium).
            let states = not_ready(node, &critical);
            failure = Some(if states.is_empty() {
                reason
            } else {
                format!(
                    "not ready within {} s: {}",
                    within.as_secs(),
                    states.join("; ")
                )
            });
            break;
        }
    }
    let checked = if critical.is_empty() {
        "spore started (no critical services)".to_owned()
    } else {
        format!("{} ready", critical.join(", "))
    };
    let facts = node.updates().facts.clone();
    let decided = runtime::offload::run("spore-slots", move || -> Result<Record, SlotError> {
        let mut record = slots.read_record()?;
        match &failure {
            None => {
                record.confirm(VERSION, &checked, now());
                slots.write_record(&record)?;
                slots.settle(&mut record)?;
            }
            Some(reason) => {
                record.revert(VERSION, reason, now());
                slots.write_record(&record)?;
            }
        }
        if let Ok(mut held) = facts.lock() {
            *held = facts_of(&record, trial.slot);
        }
        Ok(record)
    })
    .await
    .unwrap_or_else(|| Err(SlotError::Unexpected("deciding the trial failed".into())));
    drop(disarm);
    if let Some(keeper) = keeper {
        journal::note(keeper.await);
    }
    match decided {
        Ok(record) => match record.last {
            Some(last) if last.result == bootslots::record::Result::Confirmed => {
                journal::note(format_args!(
                    "update confirmed: slot {} (image {}), spore {} → {}: {}",
                    last.slot.letter(),
                    short(&last.sha256),
                    last.from_version,
                    VERSION,
                    last.reason
                ))
            }
            Some(last) => {
                journal::note(format_args!(
                    "update reverted: slot {} (image {}): {}; rebooting into the old slot",
                    last.slot.letter(),
                    short(&last.sha256),
                    last.reason
                ));
                node.reboot();
            }
            None => {}
        },
        Err(error) => {
            journal::note(format_args!("update: {error}; rebooting into the old slot"));
            node.reboot();
        }
    }
}
