//! `mode = "proxy"`: spore accepts each connection, starts the service,
//! waits for it to be ready, and joins the connection to the service's
//! `backend` address, byte for byte both ways (hero_proc's xinet).
//!
//! The socket is the attacker's to spend, and bounded as spore's own
//! listeners are: at most [`MAX_PER_SOURCE`] connections from one source
//! (an IPv4 address, an IPv6 /64; Unix peers count as one), more are
//! closed at once; at most [`MAX_OPEN`] in all, a newcomer beyond them
//! closing the oldest connection of the source that holds the most (so a
//! flood from some addresses cannot keep others out); a connection waits at
//! most [`READY_WAIT`] for the service; each side's bytes go through one
//! buffer of [`CHUNK`] (a slow reader slows its writer, not spore).
//! Refusals are counted into one summary line per [`SUMMARY_EVERY`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use runtime::journal;
use smol::future::FutureExt;
use svc::service::Endpoint;
use svc::supervisor::State;

use super::activated::{is_up, Activated};
use super::listener::{Listener, Source, Stream};

/// Connections of one socket open at once.
pub const MAX_OPEN: usize = 512;
/// …of them from one source.
pub const MAX_PER_SOURCE: usize = 64;
/// How long a connection waits for the service to be ready.
pub const READY_WAIT: Duration = Duration::from_secs(30);
/// How long the backend may take to accept once the service is ready
/// (a daemon without health checks is ready before it listens).
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// Bytes read at once from either side.
const CHUNK: usize = 16 * 1024;
/// Refusals are summarised at most this often.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// The bounds and counts of one proxied socket.
struct Door {
    on: String,
    /// Its open connections, oldest first.
    open: RefCell<Vec<Entry>>,
    next_id: Cell<u64>,
    per_source: RefCell<HashMap<IpAddr, usize>>,
    refused: Cell<u64>,
    evicted: Cell<u64>,
    last_summary: Cell<Option<Instant>>,
}

/// One open connection, as its socket's bounds see it.
struct Entry {
    id: u64,
    source: Option<IpAddr>,
    /// Closes it (to make room for a newcomer).
    evict: smol::channel::Sender<()>,
}

/// The source a bound counts: an IPv4 address, an IPv6 address's /64.
fn source_of(source: Source) -> Option<IpAddr> {
    source.map(|ip| match ip {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            for byte in octets.iter_mut().skip(8) {
                *byte = 0;
            }
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    })
}

impl Door {
    fn refuse(&self, name: &str) {
        self.refused.set(self.refused.get() + 1);
        self.summarise(name);
    }

    /// Closes the oldest connection of the source holding the most.
    fn evict(&self, name: &str) {
        let busiest = {
            let per_source = self.per_source.borrow();
            let open = self.open.borrow();
            let unix = open.iter().filter(|e| e.source.is_none()).count();
            let (ip, most) = per_source
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(ip, n)| (Some(*ip), *n))
                .unwrap_or((None, 0));
            if unix > most {
                None
            } else {
                ip
            }
        };
        let mut open = self.open.borrow_mut();
        if let Some(at) = open.iter().position(|e| e.source == busiest) {
            let entry = open.remove(at);
            let _ = entry.evict.try_send(());
        }
        drop(open);
        self.evicted.set(self.evicted.get() + 1);
        self.summarise(name);
    }

    /// One line for the refusals and evictions since the last, at most
    /// every [`SUMMARY_EVERY`].
    fn summarise(&self, name: &str) {
        let due = self
            .last_summary
            .get()
            .is_none_or(|at| at.elapsed() >= SUMMARY_EVERY);
        if due {
            journal::note(format_args!(
                "activation: {name}: {} connection(s) on {} refused over its bounds ({MAX_PER_SOURCE} per source) and {} closed to make room ({MAX_OPEN} open) since the last summary",
                self.refused.get(),
                self.on,
                self.evicted.get()
            ));
            self.refused.set(0);
            self.evicted.set(0);
            self.last_summary.set(Some(Instant::now()));
        }
    }
}

/// Accepts connections on `listener` for as long as the socket is bound.
pub async fn accept(
    activated: Rc<Activated>,
    listener: Rc<Listener>,
    on: String,
    backend: Endpoint,
) {
    let door = Rc::new(Door {
        on,
        open: RefCell::new(Vec::new()),
        next_id: Cell::new(0),
        per_source: RefCell::new(HashMap::new()),
        refused: Cell::new(0),
        evicted: Cell::new(0),
        last_summary: Cell::new(None),
    });
    let Some(node) = activated.node() else {
        return;
    };
    let executor = node.executor();
    drop(node);
    loop {
        let (stream, source) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                journal::note(format_args!(
                    "activation: {}: accept on {} failed: {error}",
                    activated.name, door.on
                ));
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = source_of(source);
        let from_source = source
            .and_then(|ip| door.per_source.borrow().get(&ip).copied())
            .unwrap_or(0);
        if activated.halted() || (source.is_some() && from_source >= MAX_PER_SOURCE) {
            door.refuse(&activated.name);
            continue;
        }
        if door.open.borrow().len() >= MAX_OPEN {
            door.evict(&activated.name);
        }
        let (held, evicted) = Held::new(&activated, &door, source);
        let backend = backend.clone();
        let activated = activated.clone();
        let door = door.clone();
        executor
            .spawn(async move {
                let _held = held;
                serve(&activated, &door.on, stream, &backend)
                    .or(async {
                        let _ = evicted.recv().await;
                    })
                    .await;
            })
            .detach();
    }
}

/// A connection counted against its bounds until dropped.
struct Held {
    activated: Rc<Activated>,
    door: Rc<Door>,
    id: u64,
    source: Option<IpAddr>,
}

impl Held {
    /// Counts a new connection; with what tells it it was evicted.
    fn new(
        activated: &Rc<Activated>,
        door: &Rc<Door>,
        source: Option<IpAddr>,
    ) -> (Self, smol::channel::Receiver<()>) {
        activated.open.set(activated.open.get() + 1);
        if let Some(ip) = source {
            *door.per_source.borrow_mut().entry(ip).or_default() += 1;
        }
        let id = door.next_id.get();
        door.next_id.set(id.wrapping_add(1));
        let (evict, evicted) = smol::channel::bounded(1);
        door.open.borrow_mut().push(Entry { id, source, evict });
        activated.touch();
        let held = Held {
            activated: activated.clone(),
            door: door.clone(),
            id,
            source,
        };
        (held, evicted)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.activated
            .open
            .set(self.activated.open.get().saturating_sub(1));
        self.door.open.borrow_mut().retain(|e| e.id != self.id);
        if let Some(ip) = self.source {
            let mut per_source = self.door.per_source.borrow_mut();
            if let Some(count) = per_source.get_mut(&ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    per_source.remove(&ip);
                }
            }
        }
        // Its end counts as activity: idle time starts from the last close.
        self.activated.touch();
    }
}

/// One connection: the service started and ready, then both ways joined.
async fn serve(activated: &Activated, on: &str, client: Stream, backend: &Endpoint) {
    if !activated.trigger(on) {
        return;
    }
    if !ready(activated).await {
        return;
    }
    let Some(server) = connect(backend).await else {
        journal::note(format_args!(
            "activation: {}: its backend {backend} did not accept within {} s",
            activated.name,
            CONNECT_WAIT.as_secs()
        ));
        return;
    };
    let one_way = pump(activated, client.clone(), server.clone());
    let other_way = pump(activated, server, client);
    // Both directions until each has ended (a half-closed side still
    // receives the other's answer).
    smol::future::zip(one_way, other_way).await;
}

/// Waits until the service is ready; false when it failed or stopped, or
/// was not ready within [`READY_WAIT`].
async fn ready(activated: &Activated) -> bool {
    if activated.state() == Some(State::Ready) {
        return true;
    }
    let Some(changes) = activated.changes() else {
        return false;
    };
    let deadline = Instant::now() + READY_WAIT;
    loop {
        match activated.state() {
            Some(State::Ready) => return true,
            Some(state) if !is_up(&state) => return false,
            None => return false,
            Some(_) => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let woke = async { changes.recv().await.is_ok() }
            .or(async {
                smol::Timer::after(left).await;
                false
            })
            .await;
        if !woke && Instant::now() >= deadline {
            return false;
        }
    }
}

/// Connects to the backend, trying again for [`CONNECT_WAIT`] while it
/// refuses (the service may be ready before it listens).
async fn connect(backend: &Endpoint) -> Option<Stream> {
    let deadline = Instant::now() + CONNECT_WAIT;
    let mut pause = Duration::from_millis(20);
    loop {
        let attempt = async { Stream::connect(backend).await.ok() }
            .or(async {
                smol::Timer::after(CONNECT_WAIT).await;
                None
            })
            .await;
        if attempt.is_some() || Instant::now() >= deadline {
            return attempt;
        }
        smol::Timer::after(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s writing side.
async fn pump(activated: &Activated, mut from: Stream, mut to: Stream) {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        activated.touch();
        let Some(chunk) = buffer.get(..n) else {
            break;
        };
        if to.write_all(chunk).await.is_err() {
            break;
        }
    }
    to.finish();
}
