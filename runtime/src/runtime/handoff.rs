//! The runtime's part of a live re-exec: what one spore hands the next so
//! that every service keeps running, unaware.
//!
//! [`Runtime::hand_off`] writes down the supervisor's state
//! ([`svc::supervisor::Handoff`]), the output pipes being read (their
//! descriptors survive the exec; the bytes of an unfinished line travel
//! with them), each service's recent output, credential directories,
//! cgroups and the process groups watched. [`Runtime::adopt`] in the new
//! process takes it all up before the event loop runs, then reaps: a
//! service that ended while spore was between binaries is seen then.
//!
//! The runtime only builds and reads this value; the init writes it to a
//! memfd and execs (see the `spore` binary's `reexec` module).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use svc::supervisor::{HandoffRefused, State, Supervisor};

use super::Runtime;
use crate::logbook::{LogLine, Stream};

/// Everything the runtime hands on (see the module docs).
#[derive(Debug, Serialize, Deserialize)]
pub struct Handoff {
    supervisor: svc::supervisor::Handoff,
    credential_dirs: Vec<(i32, PathBuf)>,
    watched_groups: Vec<i32>,
    books: Vec<Book>,
    sys: crate::sys::SysHandoff,
}

/// A service's recent output.
#[derive(Debug, Serialize, Deserialize)]
struct Book {
    service: String,
    lines: Vec<Line>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    /// Nanoseconds since the Unix epoch.
    ns: u64,
    stream: Stream,
    text: String,
}

/// What [`Runtime::adopt`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Adoption {
    /// Services whose processes were taken up.
    pub processes: usize,
    /// Output pipes read again.
    pub pipes: usize,
    /// Units handed on with no service file now, with their processes
    /// (each was sent SIGTERM: nothing supervises it any more).
    pub unknown: Vec<(String, i32)>,
}

impl Handoff {
    /// The output pipes' descriptors, which must survive the exec.
    pub fn descriptors(&self) -> Vec<i32> {
        self.sys.pipes.iter().map(|pipe| pipe.fd).collect()
    }

    /// How many services' states it holds.
    pub fn services(&self) -> usize {
        self.supervisor.len()
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Runtime {
    /// Everything the next spore needs to carry on; refused while a spawn
    /// is in flight, a removed service stops, or the node shuts down (try
    /// again in a moment). Exec health checks running now are killed:
    /// their answers would come to this process, and the next one runs
    /// them again.
    pub fn hand_off(&mut self) -> Result<Handoff, HandoffRefused> {
        let supervisor = self.supervisor.handoff(self.sys.now())?;
        for pid in self.exec_checks.keys().copied().collect::<Vec<_>>() {
            self.sys.signal_group(pid, svc::supervisor::SIGKILL);
        }
        let books = self
            .logs
            .iter()
            .map(|(service, book)| Book {
                service: service.clone(),
                lines: book
                    .tail(book.len())
                    .map(|line| Line {
                        ns: nanos(line.time),
                        stream: line.stream,
                        text: line.text.clone(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Handoff {
            supervisor,
            credential_dirs: self
                .credential_dirs
                .iter()
                .map(|(pid, dir)| (*pid, dir.clone()))
                .collect(),
            watched_groups: self.watched_groups.iter().copied().collect(),
            books,
            sys: self.sys.hand_off(),
        })
    }

    /// Takes up what an earlier spore handed on (see the module docs), in
    /// place of [`svc::supervisor::Event::Boot`]: the services as this runtime was made
    /// with are put back in the states they had, keeping their processes,
    /// and only what was pending starts.
    pub fn adopt(&mut self, handoff: Handoff) -> Adoption {
        let mut adoption = Adoption {
            pipes: handoff.sys.pipes.len(),
            ..Adoption::default()
        };
        for book in handoff.books {
            if let Some(logs) = self.logs.get_mut(&book.service) {
                logs.restore(book.lines.into_iter().map(|line| LogLine {
                    time: UNIX_EPOCH + Duration::from_nanos(line.ns),
                    stream: line.stream,
                    text: line.text,
                }));
            }
        }
        self.sys.adopt(handoff.sys);
        let pids = handoff.supervisor.pids();
        let services = self
            .supervisor
            .services()
            .into_iter()
            .cloned()
            .collect::<Vec<_>>();
        let adopted = Supervisor::adopt(services, handoff.supervisor, self.sys.now());
        self.supervisor = adopted.supervisor;
        for (service, pid) in &adopted.unknown {
            self.sys.note(&format!(
                "{service}: no valid service file after the re-exec; its process {pid} is sent SIGTERM"
            ));
            self.sys.signal_group(*pid, 15);
        }
        let time = self.sys.wall_clock();
        for (service, pid) in pids.iter().filter(|known| !adopted.unknown.contains(known)) {
            self.service_pids.insert(*pid);
            adoption.processes += 1;
            // Between its lines, where `logs` shows what happened.
            if let Some(book) = self.logs.get_mut(service) {
                book.push(LogLine {
                    time,
                    stream: Stream::Spore,
                    text: format!("re-exec: the new spore took up pid {pid}"),
                });
            }
        }
        for (pid, dir) in handoff.credential_dirs {
            self.credential_dirs.insert(pid, dir);
        }
        self.watched_groups.extend(handoff.watched_groups);
        adoption.unknown = adopted.unknown;
        for action in adopted.actions {
            self.apply(action);
        }
        while let Some(event) = self.queue.pop_front() {
            self.feed(event);
        }
        // What waits for a service to be ready (the overlay's listener)
        // hears of those that are: they will not become ready again.
        let ready: Vec<String> = self
            .ready_watchers
            .keys()
            .filter(|name| self.get(name).is_some_and(|v| v.state == State::Ready))
            .cloned()
            .collect();
        for name in ready {
            if let Some(watchers) = self.ready_watchers.get_mut(&name) {
                super::wake(watchers);
            }
        }
        // Whatever ended between the two binaries.
        self.reap();
        adoption
    }
}
