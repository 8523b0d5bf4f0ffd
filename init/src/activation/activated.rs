//! What the tasks of one activated service share: its name and state,
//! what starts it (bounded), and when it last had a connection.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use runtime::journal;
use svc::supervisor::{Event, State};

use super::{with_api, Host};

/// Starts by connections within [`TRIGGER_WINDOW`] beyond which the
/// activation stops (systemd's `TriggerLimitBurst=`).
pub const TRIGGER_BURST: usize = 20;
/// The window of [`TRIGGER_BURST`] (systemd's `TriggerLimitIntervalSec=`).
pub const TRIGGER_WINDOW: Duration = Duration::from_secs(10);

/// What the tasks of one activated service share.
pub struct Activated {
    /// The service.
    pub name: String,
    node: Weak<dyn Host>,
    /// `idle_stop`, when its sockets have one.
    pub idle_stop: Option<Duration>,
    /// The last connection seen (or start), for `idle_stop`.
    last_activity: Cell<Instant>,
    /// Proxied connections open now.
    pub open: Cell<usize>,
    /// When its last starts by a connection were.
    triggers: RefCell<VecDeque<Instant>>,
    /// Set when starts came too fast: no more until the service is
    /// started otherwise or its file changes.
    halted: Cell<bool>,
}

/// Whether a service in `state` is up, or on its way up or down (a
/// connection must not start it again).
pub fn is_up(state: &State) -> bool {
    matches!(
        state,
        State::Starting
            | State::Running
            | State::Ready
            | State::Unhealthy
            | State::Backoff { .. }
            | State::Stopping
            | State::Blocked { .. }
    )
}

impl Activated {
    /// For service `name` of `node`, stopped when idle for `idle_stop`.
    pub fn new(name: &str, node: &Rc<dyn Host>, idle_stop: Option<Duration>) -> Self {
        Activated {
            name: name.to_owned(),
            node: Rc::downgrade(node),
            idle_stop,
            last_activity: Cell::new(Instant::now()),
            open: Cell::new(0),
            triggers: RefCell::new(VecDeque::new()),
            halted: Cell::new(false),
        }
    }

    /// The node, while it lives.
    pub fn node(&self) -> Option<Rc<dyn Host>> {
        self.node.upgrade()
    }

    /// The service's state now; None once it is gone.
    pub fn state(&self) -> Option<State> {
        let node = self.node()?;
        with_api(&*node, |api| {
            api.get(&self.name).map(|view| view.state.clone())
        })
        .flatten()
    }

    /// A queue told of every state change of the service.
    pub fn changes(&self) -> Option<smol::channel::Receiver<()>> {
        let node = self.node()?;
        with_api(&*node, |api| api.runtime_mut().watch_changes(&self.name))
    }

    /// Feeds `event` to the supervisor.
    pub fn feed(&self, event: Event) {
        if let Some(node) = self.node() {
            with_api(&*node, |api| api.feed(event));
        }
    }

    /// How long since the last connection (or start).
    pub fn idle(&self) -> Duration {
        self.last_activity.get().elapsed()
    }

    /// Started otherwise (by hand): starts by connections may go on, the
    /// limit counted afresh.
    pub fn resume(&self) {
        if self.halted.replace(false) {
            self.triggers.borrow_mut().clear();
        }
    }

    /// A connection came (or is being served).
    pub fn touch(&self) {
        self.last_activity.set(Instant::now());
    }

    /// Whether starts are stopped for coming too fast.
    pub fn halted(&self) -> bool {
        self.halted.get()
    }

    /// Starts the service for a connection on `on`, unless it is up;
    /// false when it may not be started (too many starts lately).
    pub fn trigger(&self, on: &str) -> bool {
        if self.halted.get() {
            return false;
        }
        if self.state().as_ref().is_some_and(is_up) {
            return true;
        }
        let now = Instant::now();
        let mut triggers = self.triggers.borrow_mut();
        while triggers
            .front()
            .is_some_and(|t| now.duration_since(*t) > TRIGGER_WINDOW)
        {
            triggers.pop_front();
        }
        if triggers.len() >= TRIGGER_BURST {
            self.halted.set(true);
            journal::note(format_args!(
                "activation: {}: {TRIGGER_BURST} starts by connections within {} s; no more until it is started by hand or its file changes",
                self.name,
                TRIGGER_WINDOW.as_secs()
            ));
            return false;
        }
        triggers.push_back(now);
        drop(triggers);
        self.touch();
        journal::note(format_args!(
            "activation: {}: started by a connection on {on}",
            self.name
        ));
        self.feed(Event::Start(self.name.clone()));
        true
    }
}
