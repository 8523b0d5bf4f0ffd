//! Who may hold a connection that has not authenticated yet. Unauthenticated
//! connections are the attacker's to spend, not the operators': when the
//! pre-auth table is full (in total, or for one source), the newcomer is
//! admitted and an older unauthenticated connection makes room, preferring
//! one that has sent nothing (an idle socket held open) over one that has
//! sent part of a hello over one with a handshake under way; within that,
//! one of the source holding the most entries (so a flood from many
//! addresses displaces itself, not the operator with one connection), and
//! of those the oldest. A source is an IPv4 address or an IPv6 /64 (one
//! host's share of addresses). Under pressure (the table half full) new
//! connections get a short handshake deadline. An operator whose handshake
//! takes ~100 ms therefore always gets through a flood that only holds
//! sockets open, however many it opens (OpenSSH's MaxStartups refuses the
//! newcomer instead).
//!
//! Refusals, evictions and timeouts are counted and logged as one summary
//! line per [`SUMMARY_EVERY`] at most, never a line per connection.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender};

/// Summaries of refusals are logged at most this often.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Bounds on unauthenticated connections.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Who is speaking in the summary lines (`rpc`, `beacon`).
    pub label: &'static str,
    /// What a connection must finish before its deadline (`handshake`,
    /// `request`), for the summary lines.
    pub task: &'static str,
    /// Unauthenticated connections at once, from everyone.
    pub total: usize,
    /// Unauthenticated connections at once from one address.
    pub per_source: usize,
    /// Time from accept to the end of the handshake.
    pub deadline: Duration,
    /// The deadline for connections admitted while the table is at least
    /// half full.
    pub pressure_deadline: Duration,
}

/// What admission decided for one connection.
pub struct Ticket {
    id: u64,
    /// Receives a token when the connection must make room for a newer one.
    pub evicted: Receiver<()>,
    /// How long its handshake may take.
    pub deadline: Duration,
}

impl Ticket {
    /// Its number, for [`Admission::done`].
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// How an unauthenticated connection ended, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Refused at accept: the node holds its maximum of connections.
    Full,
    /// Closed to make room for a newer one.
    Evicted,
    /// Its handshake took longer than its deadline.
    TimedOut,
    /// It went away before finishing its handshake.
    Failed,
    /// Its hello was closed unanswered: its source spent its budget of
    /// hellos under pressure ([`crate::hello_budget`]).
    OverBudget,
}

struct Entry {
    id: u64,
    /// The source: an IPv4 address, or an IPv6 address's /64.
    ip: IpAddr,
    fd: RawFd,
    since: Instant,
    /// It sent a well-formed hello: a handshake is under way.
    progressed: bool,
    evict: Sender<()>,
}

#[derive(Default)]
struct Tally {
    full: u64,
    evicted: u64,
    timed_out: u64,
    failed: u64,
    over_budget: u64,
    last_logged: Option<Instant>,
}

/// The pre-auth table of one server (single-threaded, on the event loop).
pub struct Admission {
    bounds: Bounds,
    table: RefCell<Vec<Entry>>,
    next: Cell<u64>,
    tally: RefCell<Tally>,
}

impl Admission {
    /// An empty table with `bounds` (zero bounds are taken as one).
    pub fn new(bounds: Bounds) -> Self {
        Self {
            bounds: Bounds {
                total: bounds.total.max(1),
                per_source: bounds.per_source.max(1),
                ..bounds
            },
            table: RefCell::new(Vec::new()),
            next: Cell::new(0),
            tally: RefCell::new(Tally::default()),
        }
    }

    /// Unauthenticated connections held now.
    pub fn len(&self) -> usize {
        self.table.try_borrow().map_or(0, |t| t.len())
    }

    /// True while the table is at least half full (a flood, or close to
    /// one): new connections get the short deadline, and hellos are
    /// budgeted per source.
    pub fn under_pressure(&self) -> bool {
        self.len() * 2 >= self.bounds.total
    }

    /// True when no unauthenticated connection is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Admits a connection from `ip` (socket `fd`), making room first when
    /// its source or the whole table is at its bound.
    pub fn admit(&self, ip: IpAddr, fd: RawFd) -> Ticket {
        let ip = source_of(ip);
        let (evict, evicted) = smol::channel::bounded(1);
        let id = self.next.get();
        self.next.set(id + 1);
        let Ok(mut table) = self.table.try_borrow_mut() else {
            // Never held across a call: cannot happen; admit without a slot.
            return Ticket {
                id,
                evicted,
                deadline: self.bounds.pressure_deadline,
            };
        };
        let from_source = table.iter().filter(|e| e.ip == ip).count();
        let victim = if from_source >= self.bounds.per_source {
            pick_victim(&table, |e| e.ip == ip)
        } else if table.len() >= self.bounds.total {
            pick_victim(&table, |_| true)
        } else {
            None
        };
        if let Some(at) = victim {
            let gone = table.swap_remove(at);
            let _ = gone.evict.try_send(());
            if let Ok(mut tally) = self.tally.try_borrow_mut() {
                tally.evicted += 1;
            }
        }
        let deadline = if table.len() * 2 >= self.bounds.total {
            self.bounds.pressure_deadline.min(self.bounds.deadline)
        } else {
            self.bounds.deadline
        };
        table.push(Entry {
            id,
            ip,
            fd,
            since: Instant::now(),
            progressed: false,
            evict,
        });
        Ticket {
            id,
            evicted,
            deadline,
        }
    }

    /// The connection `id` sent a well-formed hello: it is evicted only
    /// after every connection that has not.
    pub fn progressed(&self, id: u64) {
        if let Ok(mut table) = self.table.try_borrow_mut() {
            if let Some(entry) = table.iter_mut().find(|e| e.id == id) {
                entry.progressed = true;
            }
        }
    }

    /// The connection `id` finished its handshake (or ended): it leaves
    /// the table.
    pub fn done(&self, id: u64) {
        if let Ok(mut table) = self.table.try_borrow_mut() {
            table.retain(|e| e.id != id);
        }
    }

    /// Counts one ending; returns a summary line when one is due (the
    /// first ending, then at most one per [`SUMMARY_EVERY`]).
    pub fn count(&self, ending: Ending) -> Option<String> {
        let mut tally = self.tally.try_borrow_mut().ok()?;
        match ending {
            Ending::Full => tally.full += 1,
            Ending::Evicted => {} // counted when evicted
            Ending::TimedOut => tally.timed_out += 1,
            Ending::Failed => tally.failed += 1,
            Ending::OverBudget => tally.over_budget += 1,
        }
        let due = tally
            .last_logged
            .is_none_or(|at| at.elapsed() >= SUMMARY_EVERY);
        if !due {
            return None;
        }
        let line = format!(
            "{}: unauthenticated connections since the last summary: {} evicted to make room, {} timed out ({} not finished within {}s), {} went away, {} refused (at the connection limit), {} closed unanswered (their source's hello budget spent); {} held now",
            self.bounds.label,
            tally.evicted,
            tally.timed_out,
            self.bounds.task,
            self.bounds.deadline.as_secs_f64(),
            tally.failed,
            tally.full,
            tally.over_budget,
            self.len()
        );
        *tally = Tally {
            last_logged: Some(Instant::now()),
            ..Tally::default()
        };
        Some(line)
    }
}

/// The entry to evict among those `eligible`: from the first group that
/// has one (sockets that have sent nothing at all, then those that have not
/// sent a whole hello, then the rest), one of the source that holds the
/// most entries in the table, and of those the oldest. The candidates are
/// put in that order first and asked for waiting bytes one by one until an
/// idle one turns up, so a flood of idle sockets costs one FIONREAD per
/// eviction, not one per entry.
fn pick_victim(table: &[Entry], eligible: impl Fn(&Entry) -> bool) -> Option<usize> {
    let mut held: std::collections::HashMap<IpAddr, usize> = std::collections::HashMap::new();
    for entry in table {
        *held.entry(entry.ip).or_insert(0) += 1;
    }
    let mut order: Vec<(usize, &Entry)> = table
        .iter()
        .enumerate()
        .filter(|(_, e)| eligible(e))
        .collect();
    order.sort_by_key(|(_, e)| {
        let heaviest = held.get(&e.ip).copied().unwrap_or(0);
        (e.progressed, std::cmp::Reverse(heaviest), e.since)
    });
    let quiet = order
        .iter()
        .take_while(|(_, e)| !e.progressed)
        .find(|(_, e)| pending_bytes(e.fd) == 0);
    quiet.or(order.first()).map(|(at, _)| *at)
}

/// The source a connection counts against: an IPv4 address (also when it
/// comes as an IPv4-mapped IPv6 address), or the /64 of an IPv6 address,
/// the share one host is given.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Bytes waiting to be read on socket `fd` (FIONREAD); 0 when unknown.
fn pending_bytes(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if rc == 0 {
        usize::try_from(n).unwrap_or(0)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use super::*;

    fn bounds(total: usize, per_source: usize) -> Bounds {
        Bounds {
            label: "test",
            task: "handshake",
            total,
            per_source,
            deadline: Duration::from_secs(10),
            pressure_deadline: Duration::from_secs(1),
        }
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_full_table_makes_room_from_the_heaviest_source_oldest_first() {
        let admission = Admission::new(bounds(3, 3));
        let first = admission.admit(A, -1);
        let second = admission.admit(B, -1);
        let third = admission.admit(B, -1);
        let newcomer = admission.admit(B, -1);
        assert_eq!(admission.len(), 3);
        assert!(second.evicted.try_recv().is_ok(), "B's oldest made room");
        assert!(first.evicted.try_recv().is_err(), "A holds one: it stays");
        assert!(third.evicted.try_recv().is_err());
        assert!(newcomer.evicted.try_recv().is_err());
        // Equal shares: the oldest goes.
        let even = Admission::new(bounds(2, 2));
        let a = even.admit(A, -1);
        let b = even.admit(B, -1);
        let _c = even.admit(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)), -1);
        assert!(a.evicted.try_recv().is_ok());
        assert!(b.evicted.try_recv().is_err());
    }

    #[test]
    fn a_flood_from_many_sources_displaces_itself_not_the_operator() {
        // The table holds more than there are attacking sources (256 and
        // 64): each source's share grows past the operator's one entry.
        let admission = Admission::new(bounds(256, 16));
        let operator = admission.admit(A, -1);
        admission.progressed(operator.id());
        // 64 sources, each reopening as it is shed, each sending a hello.
        for _round in 0..50 {
            for source in 0..64u8 {
                let ip = IpAddr::V4(Ipv4Addr::new(10, 1, 0, source));
                let flood = admission.admit(ip, -1);
                admission.progressed(flood.id());
            }
        }
        assert!(
            operator.evicted.try_recv().is_err(),
            "the operator kept its slot"
        );
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64() {
        let host =
            |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 7, 0, 0, 0, last));
        assert_eq!(source_of(host(1)), source_of(host(0xffff)));
        let other = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 8, 0, 0, 0, 1));
        assert_ne!(source_of(host(1)), source_of(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(source_of(mapped), A);
        let admission = Admission::new(bounds(10, 2));
        let first = admission.admit(host(1), -1);
        let _ = admission.admit(host(2), -1);
        let _ = admission.admit(host(3), -1);
        assert!(
            first.evicted.try_recv().is_ok(),
            "three addresses, one host"
        );
    }

    #[test]
    fn one_source_at_its_bound_evicts_its_own_not_anothers() {
        let admission = Admission::new(bounds(10, 2));
        let other = admission.admit(B, -1);
        let own_first = admission.admit(A, -1);
        let _own_second = admission.admit(A, -1);
        let _own_third = admission.admit(A, -1);
        assert!(own_first.evicted.try_recv().is_ok());
        assert!(other.evicted.try_recv().is_err(), "B keeps its slot");
    }

    #[test]
    fn an_idle_socket_goes_before_one_with_a_handshake_waiting() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let mut talker = TcpStream::connect(address).unwrap();
        let (talking, _) = listener.accept().unwrap();
        let _idler = TcpStream::connect(address).unwrap();
        let (idle, _) = listener.accept().unwrap();
        talker.write_all(b"hello").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let admission = Admission::new(bounds(2, 2));
        let handshaking = admission.admit(A, talking.as_raw_fd());
        let idling = admission.admit(A, idle.as_raw_fd());
        let _newcomer = admission.admit(A, -1);
        assert!(
            idling.evicted.try_recv().is_ok(),
            "the idle socket made room"
        );
        assert!(
            handshaking.evicted.try_recv().is_err(),
            "though it is older"
        );
    }

    #[test]
    fn a_connection_past_its_hello_goes_last() {
        let admission = Admission::new(bounds(2, 2));
        let operator = admission.admit(A, -1);
        admission.progressed(operator.id());
        let idle = admission.admit(A, -1);
        let _newcomer = admission.admit(A, -1);
        assert!(idle.evicted.try_recv().is_ok());
        assert!(operator.evicted.try_recv().is_err(), "though it is older");
    }

    #[test]
    fn under_pressure_the_deadline_is_short_and_done_frees_the_slot() {
        let admission = Admission::new(bounds(4, 4));
        let a = admission.admit(A, -1);
        assert_eq!(a.deadline, Duration::from_secs(10));
        let _b = admission.admit(A, -1);
        let c = admission.admit(A, -1);
        assert_eq!(
            c.deadline,
            Duration::from_secs(1),
            "half full: short deadline"
        );
        admission.done(a.id());
        assert_eq!(admission.len(), 2);
    }

    #[test]
    fn endings_are_summarised_not_logged_one_by_one() {
        let admission = Admission::new(bounds(1, 1));
        let first = admission.count(Ending::TimedOut);
        assert!(first.is_some_and(|l| l.contains("1 timed out")));
        let lines: Vec<String> = (0..1000)
            .filter_map(|_| admission.count(Ending::Full))
            .collect();
        assert!(lines.is_empty(), "no second line within {SUMMARY_EVERY:?}");
    }
}
