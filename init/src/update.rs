//! In-place updates as PID 1: at start, which boot slot this is and
//! whether it is on trial ([`bootslots::Record::on_boot`]); on trial,
//! confirm it once the critical services are ready, or record why not and
//! reboot into the old slot; and `node.update`, which stages an image held
//! as an artifact into the other slot. Every file and firmware access runs
//! on a thread; the event loop only waits for answers.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bootslots::{Boot, Record, Slots};
use nodeapi::api::{code, ApiError, Reply};
use nodeapi::NodeApi;
use runtime::journal;
use serde_json::{json, Map, Value};

use crate::config::Update as Settings;

mod trial;

use trial::decide_trial;

/// What updates need of the node they run in (the init's `Node`).
pub trait Host: 'static {
    /// Runs `f` on the node API; None when it is busy.
    fn with_api<T>(&self, f: impl FnOnce(&mut NodeApi) -> T) -> Option<T>;
    /// Asks for an orderly reboot (services stop in order first).
    fn reboot(&self);
    /// The update state.
    fn updates(&self) -> &Updates;
}

/// spore's version, as `node.info` and the record say it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the record lives under the state directory.
const RECORD: &str = "boot/slots.json";

/// The watchdog device a trial arms.
const WATCHDOG: &str = "/dev/watchdog";

/// How long a critical service that failed is given before it is asked
/// after again (it may be restarted within the confirmation window).
const RECHECK: Duration = Duration::from_secs(1);

/// The node's update state, shared with the threads that change it.
pub struct Updates {
    /// The slots, or why there are none.
    slots: Mutex<Result<Slots, String>>,
    /// What `node.info` shows under `boot`: the slots' part.
    facts: Arc<Mutex<Value>>,
    /// And which build and image this is (`build_id`, `image_sha256`),
    /// hashed after the start, off the loop (seconds under emulation).
    identity: Arc<Mutex<Map<String, Value>>>,
    /// Set while an image is being staged: one at a time.
    busy: Arc<AtomicBool>,
    /// The `[update] keys`.
    keys: Vec<String>,
    /// Set while this boot is a trial not yet decided: nothing is staged
    /// over it.
    on_trial: AtomicBool,
}

impl Updates {
    /// Before the slots are looked at.
    pub fn new(settings: &Settings) -> Updates {
        Updates {
            slots: Mutex::new(Err("not looked at yet".into())),
            facts: Arc::new(Mutex::new(json!({ "slots": false }))),
            identity: Arc::new(Mutex::new(Map::new())),
            busy: Arc::new(AtomicBool::new(false)),
            keys: settings.keys.clone(),
            on_trial: AtomicBool::new(false),
        }
    }

    /// The `[update] keys`: what an image or a spore binary must be
    /// signed by (none: anything goes).
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// True while this boot is an update on trial not yet decided.
    pub fn on_trial(&self) -> bool {
        self.on_trial.load(Ordering::SeqCst)
    }

    /// The running binary's SHA-256, once hashed (empty before).
    pub fn build_id(&self) -> String {
        self.identity
            .lock()
            .ok()
            .and_then(|held| {
                held.get("build_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    }

    /// What `node.info` shows under `boot`.
    pub fn facts(&self) -> Value {
        let mut facts = self.facts.lock().map(|f| f.clone()).unwrap_or(Value::Null);
        if let (Value::Object(map), Ok(identity)) = (&mut facts, self.identity.lock()) {
            map.extend(identity.clone());
        }
        facts
    }

    fn set_slots(&self, slots: Result<Slots, String>) {
        if let Ok(mut held) = self.slots.lock() {
            *held = slots;
        }
    }

    fn slots(&self) -> Result<Slots, ApiError> {
        match self.slots.lock() {
            Ok(held) => held.clone().map_err(|reason| {
                ApiError::new(
                    code::NO_SLOTS,
                    format!("this node has no boot slots: {reason}"),
                )
            }),
            Err(_) => Err(ApiError::new(code::INTERNAL, "the slots are unavailable")),
        }
    }
}

/// The facts of `record` on `booted`, as `node.info` shows them.
fn facts_of(record: &Record, booted: bootslots::Slot) -> Value {
    json!({
        "slots": true,
        "slot": booted.letter(),
        "confirmed": record.confirmed.letter(),
        "confirmed_sha256": record.confirmed_sha256,
        "trial": record.trial,
        "last_update": record.last,
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The SHA-256 of the running binary: which build this is.
pub fn build_id() -> String {
    artifacts::Digest::of_file(Path::new("/proc/self/exe"))
        .map(|d| d.hex())
        .unwrap_or_default()
}

/// Mounts efivarfs where the kernel has UEFI and it is not mounted yet.
fn mount_efivars() -> Result<PathBuf, String> {
    let dir = PathBuf::from(bootslots::efivar::MOUNT_POINT);
    if !Path::new("/sys/firmware/efi").is_dir() {
        return Err("not booted under UEFI (no /sys/firmware/efi)".into());
    }
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Ok(dir);
    }
    use nix::mount::{mount, MsFlags};
    mount(
        Some("efivarfs"),
        &dir,
        Some("efivarfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| {
        format!(
            "mounting efivarfs on {}: {e} (is the efivarfs module in the image?)",
            dir.display()
        )
    })?;
    Ok(dir)
}

/// What the start found.
struct Started {
    slots: Slots,
    record: Record,
    booted: bootslots::Slot,
    boot: Boot,
    /// The outcome this start recorded (a trial the firmware did not come
    /// back to), to be said.
    ended: Option<bootslots::Outcome>,
}

/// Reads the slots and the record, decides what this boot is, and writes
/// the record back; on an ordinary boot, also puts the confirmed slot
/// first in BootOrder and finishes a confirmation a crash cut short.
fn look(settings: &Settings, record_path: &Path) -> Result<Started, String> {
    let vars = mount_efivars()?;
    let slots = Slots::open(&settings.esp, &vars, record_path).map_err(|e| e.to_string())?;
    let mut record = slots.read_record().map_err(|e| e.to_string())?;
    let booted = slots.booted(&record).map_err(|e| e.to_string())?;
    let before = record.clone();
    let boot = record.on_boot(booted, VERSION, now());
    let ended = (record.last != before.last)
        .then(|| record.last.clone())
        .flatten();
    if record != before {
        slots.write_record(&record).map_err(|e| e.to_string())?;
    }
    if boot == Boot::Normal {
        let settled = if record.settling {
            slots.settle(&mut record)
        } else {
            slots.order_first(record.confirmed)
        };
        if let Err(error) = settled {
            journal::note(format_args!("boot slots: {error}"));
        }
    }
    Ok(Started {
        slots,
        record,
        booted,
        boot,
        ended,
    })
}

/// Looks at the slots off the event loop (PID 1 only) and, on a trial
/// boot, starts the task that confirms or reverts it; then hashes the
/// running binary and the booted slot's image for `node.info`.
pub fn start<H: Host>(
    node: &Rc<H>,
    executor: &'static smol::LocalExecutor<'static>,
    pid1: bool,
    settings: &Settings,
    state_dir: &Path,
) {
    let facts = node.updates().facts.clone();
    if !pid1 {
        node.updates().set_slots(Err("spore is not PID 1".into()));
        let identity = node.updates().identity.clone();
        executor
            .spawn(async move { remember_identity(identity, None).await })
            .detach();
        return;
    }
    let record_path = state_dir.join(RECORD);
    let settings = settings.clone();
    let node = node.clone();
    executor
        .spawn(async move {
            let looked = {
                let settings = settings.clone();
                runtime::offload::run("spore-slots", move || look(&settings, &record_path))
                    .await
                    .unwrap_or_else(|| Err("looking at the slots failed".into()))
            };
            let identity = node.updates().identity.clone();
            let started = match looked {
                Ok(started) => started,
                Err(reason) => {
                    journal::note(format_args!(
                        "boot slots: none ({reason}); node.update is off"
                    ));
                    node.updates().set_slots(Err(reason));
                    remember_identity(identity, None).await;
                    return;
                }
            };
            if let Ok(mut held) = facts.lock() {
                *held = facts_of(&started.record, started.booted);
            }
            if let Some(ended) = &started.ended {
                journal::note(format_args!(
                    "update reverted: slot {} (image {}) {}",
                    ended.slot.letter(),
                    short(&ended.sha256),
                    ended.reason
                ));
            }
            node.updates().set_slots(Ok(started.slots.clone()));
            let booted = (started.slots.clone(), started.booted);
            match started.boot {
                Boot::Normal => {
                    journal::note(format_args!(
                        "boot slots: booted slot {} (confirmed {})",
                        started.booted.letter(),
                        started.record.confirmed.letter()
                    ));
                    remember_identity(identity, Some(booted)).await;
                }
                Boot::RevertNow(reason) => {
                    journal::note(format_args!(
                        "update reverted: {reason}; rebooting into the old slot"
                    ));
                    node.reboot();
                }
                Boot::Trial(trial) => {
                    node.updates().on_trial.store(true, Ordering::SeqCst);
                    let task = executor.spawn(remember_identity(identity, Some(booted)));
                    decide_trial(&*node, executor, &settings, started.slots, trial).await;
                    node.updates().on_trial.store(false, Ordering::SeqCst);
                    task.await;
                }
            }
        })
        .detach();
}

/// Hashes the running binary (`build_id`) and, with slots, the booted
/// slot's image (`image_sha256`), on a thread, for `node.info`.
async fn remember_identity(
    identity: Arc<Mutex<Map<String, Value>>>,
    booted: Option<(Slots, bootslots::Slot)>,
) {
    let hashed = runtime::offload::run("spore-identity", move || {
        let image = booted.and_then(|(slots, slot)| slots.image_sha256(slot).ok());
        (build_id(), image)
    })
    .await
    .unwrap_or_default();
    if let Ok(mut held) = identity.lock() {
        held.insert("build_id".into(), json!(hashed.0));
        if let Some(image) = hashed.1 {
            held.insert("image_sha256".into(), json!(image));
        }
    }
}

/// What a registration says of the boot slots (`boot`): the confirmed
/// slot, one on trial, and how the last update ended, read from the record
/// on the state disk; nothing on a node that never updated.
pub fn registration_fields(state_dir: &Path) -> std::collections::BTreeMap<String, Value> {
    let mut fields = std::collections::BTreeMap::new();
    let Ok(bytes) = std::fs::read(state_dir.join(RECORD)) else {
        return fields;
    };
    let Ok(record) = serde_json::from_slice::<Record>(&bytes) else {
        return fields;
    };
    fields.insert(
        "boot".into(),
        json!({
            "confirmed": record.confirmed.letter(),
            "trial": record.trial.as_ref().map(|t| t.slot.letter()),
            "last_update": record.last.as_ref().map(|last| json!({
                "result": last.result,
                "slot": last.slot.letter(),
                "from_version": last.from_version,
                "to_version": last.to_version,
                "at": last.at,
            })),
        }),
    );
    fields
}

fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

/// `node.update`: stages the artifact `sha256` into the slot not in use,
/// on a thread; answers when it is written, read back and set as
/// BootNext.
pub fn stage(
    node: &impl Host,
    api: &mut NodeApi,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let slots = node.updates().slots()?;
    if node.updates().on_trial.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            code::BUSY,
            "this boot is an update on trial: it is confirmed or reverted first",
        ));
    }
    let sha256 = params
        .get("sha256")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let digest = artifacts::Digest::parse(sha256)
        .map_err(|e| ApiError::new(code::INVALID_PARAMS, e.to_string()))?;
    let Some(store) = api.runtime_mut().files().and_then(|f| f.artifacts.clone()) else {
        return Err(ApiError::new(
            code::NO_STORE,
            "this node keeps no artifacts: an update image arrives as one",
        ));
    };
    let path = store.join("sha256").join(digest.hex());
    let signature = params
        .get("signature")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if node.updates().busy.swap(true, Ordering::SeqCst) {
        return Err(ApiError::new(
            code::BUSY,
            "an update is being staged already",
        ));
    }
    let busy = node.updates().busy.clone();
    let keys = node.updates().keys.clone();
    let facts = node.updates().facts.clone();
    let hex = digest.hex();
    // The image lives in the slot once staged: its copy in the store goes,
    // or a state disk's quota would fill with images after an update or two.
    let store_writer = api.artifacts().map(nodeapi::artifacts::Artifacts::writer);
    let (answer, pending) = smol::channel::bounded(1);
    let work = move || {
        let outcome = stage_now(&slots, &path, &hex, signature.as_deref(), &keys);
        let removed = outcome.is_ok()
            && store_writer
                .as_ref()
                .is_some_and(|writer| writer.remove(digest).is_ok());
        if let Ok((record, _)) = &outcome {
            if let Ok(mut held) = facts.lock() {
                if let Value::Object(map) = &mut *held {
                    map.insert("trial".into(), json!(record.trial));
                }
            }
        }
        busy.store(false, Ordering::SeqCst);
        let reply = outcome.map(|(record, staged)| {
            json!({
                "staged": true,
                "slot": staged.slot.letter(),
                "boot_entry": format!("Boot{:04X}", staged.entry),
                "sha256": hex,
                "trial": record.trial,
                "artifact_removed": removed,
                "note": "the next boot tries it once; reboot the node (sporectl reboot) to do it now",
            })
        });
        let _ = answer.send_blocking(reply);
    };
    if let Err(error) = std::thread::Builder::new()
        .name("spore-update".into())
        .spawn(work)
    {
        node.updates().busy.store(false, Ordering::SeqCst);
        return Err(ApiError::new(
            code::INTERNAL,
            format!("cannot start the update thread: {error}"),
        ));
    }
    journal::note(format_args!("update: staging image {}", short(sha256)));
    Ok(Reply::Pending(pending))
}

fn stage_now(
    slots: &Slots,
    path: &Path,
    sha256: &str,
    signature: Option<&str>,
    keys: &[String],
) -> Result<(Record, bootslots::Staged), ApiError> {
    let bytes = std::fs::read(path).map_err(|e| {
        ApiError::new(
            if e.kind() == std::io::ErrorKind::NotFound {
                code::INVALID_PARAMS
            } else {
                code::STORAGE
            },
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("no artifact {sha256} on this node: send it first (sporectl artifact put)")
            } else {
                format!("{}: {e}", path.display())
            },
        )
    })?;
    bootslots::image::verify(&bytes, sha256, signature, keys)
        .map_err(|e| ApiError::new(code::IMAGE_REFUSED, e.to_string()))?;
    let staged = slots
        .stage(&bytes, sha256, VERSION, now())
        .map_err(|e| ApiError::new(code::STORAGE, e.to_string()))?;
    journal::note(format_args!(
        "update staged: image {} in slot {}, BootNext {:04X}: the next boot tries it",
        short(sha256),
        staged.slot.letter(),
        staged.entry
    ));
    let record = slots
        .read_record()
        .map_err(|e| ApiError::new(code::STORAGE, e.to_string()))?;
    Ok((record, staged))
}
