//! The node API: what both control channels (the local Unix socket and the
//! signed TCP transport) call. It turns a JSON-RPC request into the
//! runtime's events and files ([`api`], [`changes`]), writes files off the
//! event loop ([`store`]), answers calls that wait for a service to settle
//! ([`wait`]) and shapes the answers ([`api::views`], [`jsonrpc`]).
//!
//! ```text
//! control socket / signed RPC ──request──▶ NodeApi ──Event──▶ runtime::Runtime
//!                    ▲                       │  ▲                   │
//!                    └───────answer──────────┘  └────Notice─────────┘
//! ```
//!
//! It sits above the executor (`runtime`), which formats no JSON and knows
//! no caller: every change the runtime makes reaches the waiting calls as a
//! [`runtime::Notice`], taken after each thing the runtime handles.

pub mod api;
pub mod artifacts;
pub mod changes;
pub mod jsonrpc;
pub mod reply;
pub mod store;
pub mod wait;

pub use proto::wipe;

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use serde_json::Value;
use smol::channel::{Receiver, Sender};
use smol::LocalExecutor;
use svc::supervisor::{Event, State};

use runtime::{Notice, Runtime};

use crate::reply::{code, ApiError};
use crate::wait::{Answer, Outcome, Step, Waits};

/// Something for the node to handle: the runtime's own inputs, or a file
/// write that finished off the loop.
#[derive(Debug)]
pub enum Input {
    /// For the runtime (a timer, a check, a line of output, …).
    Runtime(runtime::Input),
    /// A file write or deletion finished off the loop.
    Stored(Box<store::Done>),
    /// The artifact store's news: an artifact completed, or a fetch gave
    /// up.
    Artifact(artifacts::News),
}

/// What the event loop reads: finished file work first, then the
/// runtime's inputs (facts before output lines).
pub struct Inputs {
    runtime: runtime::Inputs,
    stored: Receiver<Box<store::Done>>,
    arrived: Receiver<artifacts::News>,
}

impl Inputs {
    /// The next input; None only if the node is gone.
    pub async fn next(&self) -> Option<Input> {
        use smol::future::FutureExt;
        async { self.stored.recv().await.ok().map(Input::Stored) }
            .or(async { self.arrived.recv().await.ok().map(Input::Artifact) })
            .or(async { self.runtime.next().await.map(Input::Runtime) })
            .await
    }

    /// The next input already queued, without waiting.
    pub fn try_next(&self) -> Option<Input> {
        if let Ok(done) = self.stored.try_recv() {
            return Some(Input::Stored(done));
        }
        if let Ok(news) = self.arrived.try_recv() {
            return Some(Input::Artifact(news));
        }
        self.runtime.try_next().map(Input::Runtime)
    }
}

/// The runtime with the calls waiting on it and the storage task's queue.
/// Read the runtime through it (it derefs to [`Runtime`]); change it only
/// through its methods or [`NodeApi::runtime_mut`], so that what changed
/// reaches the waiting calls.
pub struct NodeApi {
    runtime: Runtime,
    /// Calls waiting for a service to settle.
    waits: Waits,
    /// Disk work for the storage task (see [`store`]).
    store_tx: Sender<store::Job>,
    /// The artifact store, when the node keeps one.
    artifacts: Option<artifacts::Artifacts>,
    /// Where the store tells of artifacts it completed.
    arrived_tx: Sender<artifacts::News>,
    /// Artifacts being fetched, by digest: a call waiting for a service
    /// that waits for one of them keeps waiting.
    fetching: std::collections::HashSet<String>,
    /// Fetches artifacts services wait for (the init's: it speaks HTTP).
    fetcher: Option<Fetcher>,
}

/// Asked to fetch `artifact` into the store through `writer`; runs it off
/// the loop and returns at once.
pub type Fetcher = Box<dyn Fn(svc::service::ArtifactRef, artifacts::Writer)>;

/// The runtime, borrowed to change it; what changed is taken when this
/// guard goes.
pub struct RuntimeMut<'a>(&'a mut NodeApi);

impl Deref for RuntimeMut<'_> {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        &self.0.runtime
    }
}

impl DerefMut for RuntimeMut<'_> {
    fn deref_mut(&mut self) -> &mut Runtime {
        &mut self.0.runtime
    }
}

impl Drop for RuntimeMut<'_> {
    fn drop(&mut self) {
        self.0.sync();
    }
}

impl Deref for NodeApi {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        &self.runtime
    }
}

/// A waiter's two timers, as the runtime's caller-timer keys.
fn deadline_key(id: u64) -> u64 {
    id.saturating_mul(2)
}

fn steady_key(id: u64) -> u64 {
    id.saturating_mul(2).saturating_add(1)
}

impl NodeApi {
    /// The node API over `runtime` (made with its inputs), with its
    /// storage task spawned on `executor`; returns what the event loop
    /// reads.
    pub fn new(
        runtime: Runtime,
        inputs: runtime::Inputs,
        executor: &'static LocalExecutor<'static>,
    ) -> (Self, Inputs) {
        let (store_tx, jobs) = smol::channel::unbounded();
        let (done_tx, stored) = smol::channel::unbounded();
        executor.spawn(store::serve(jobs, done_tx)).detach();
        let mut api = Self::with_store(runtime, store_tx);
        // Arrivals are few (one per artifact completed): a short queue,
        // and one that is full loses nothing a backoff retry would not
        // find anyway.
        let (arrived_tx, arrived) = smol::channel::bounded(64);
        api.arrived_tx = arrived_tx;
        (
            api,
            Inputs {
                runtime: inputs,
                stored,
                arrived,
            },
        )
    }

    /// The node API over `runtime`, its disk work going to `store_tx`.
    pub fn with_store(runtime: Runtime, store_tx: Sender<store::Job>) -> Self {
        Self {
            runtime,
            waits: Waits::default(),
            store_tx,
            artifacts: None,
            arrived_tx: smol::channel::bounded(1).0,
            fetching: std::collections::HashSet::new(),
            fetcher: None,
        }
    }

    /// Serves `artifact.*` from `store` (see [`artifacts`]), worked on by a
    /// thread of its own.
    pub fn open_artifacts(&mut self, store: ::artifacts::Store) -> std::io::Result<()> {
        let started = artifacts::Artifacts::start(store, self.arrived_tx.clone())?;
        self.artifacts = Some(started);
        self.keep_pinned();
        Ok(())
    }

    /// Tells the artifact store what the services pin now (after every
    /// change of the services: a deploy, a removal, a reload).
    pub(crate) fn keep_pinned(&self) {
        let Some(store) = &self.artifacts else {
            return;
        };
        let pinned = self
            .runtime
            .supervisor()
            .list()
            .iter()
            .flat_map(|v| v.service.artifacts.iter())
            .filter_map(|a| ::artifacts::Digest::parse(&a.sha256).ok())
            .collect();
        store.keep(pinned);
    }

    /// Fetches the artifacts a service waits for with `fetcher`.
    pub fn set_fetcher(&mut self, fetcher: Fetcher) {
        self.fetcher = Some(fetcher);
    }

    /// `digest` is in the store: the services that pin it and wait to be
    /// retried (in backoff, or failed while wanted) start now.
    pub fn artifact_arrived(&mut self, digest: &::artifacts::Digest) {
        let hex = digest.hex();
        self.fetching.remove(&hex);
        let waiting: Vec<String> = self
            .runtime
            .supervisor()
            .list()
            .into_iter()
            .filter(|v| {
                v.pid.is_none()
                    && v.wanted
                    && matches!(v.state, State::Backoff { .. } | State::Failed(_))
                    && v.service.artifacts.iter().any(|a| a.sha256 == hex)
            })
            .map(|v| v.service.name.clone())
            .collect();
        for service in waiting {
            runtime::journal::note(format_args!(
                "{service}: started now: artifact sha256:{hex} arrived"
            ));
            self.feed(Event::Restart(service));
        }
    }

    /// A fetch of `digest` gave up: calls waiting for the services that
    /// pin it answer now (with the failed start).
    pub fn artifact_not_fetched(&mut self, digest: &::artifacts::Digest) {
        let hex = digest.hex();
        if !self.fetching.remove(&hex) {
            return;
        }
        let services: Vec<String> = self
            .runtime
            .supervisor()
            .list()
            .into_iter()
            .filter(|v| v.service.artifacts.iter().any(|a| a.sha256 == hex))
            .map(|v| v.service.name.clone())
            .collect();
        for service in services {
            for id in self.waits.of(&service) {
                self.advance_wait(id);
            }
        }
    }

    /// Whether `service` waits for an artifact being fetched.
    fn awaits_fetch(&self, service: &svc::Service) -> bool {
        service
            .artifacts
            .iter()
            .any(|a| self.fetching.contains(&a.sha256))
    }

    /// A service waits for artifacts: fetch those it may fetch.
    fn fetch_for(&mut self, service: &str) {
        let (Some(fetch), Some(store)) = (&self.fetcher, &self.artifacts) else {
            return;
        };
        let Some(view) = self.runtime.get(service) else {
            return;
        };
        for artifact in view.service.artifacts.iter().filter(|a| !a.urls.is_empty()) {
            fetch(artifact.clone(), store.writer());
            self.fetching.insert(artifact.sha256.clone());
        }
    }

    /// The artifact store, when there is one.
    pub fn artifacts(&self) -> Option<&artifacts::Artifacts> {
        self.artifacts.as_ref()
    }

    /// The runtime, to change it (see [`RuntimeMut`]).
    pub fn runtime_mut(&mut self) -> RuntimeMut<'_> {
        RuntimeMut(self)
    }

    /// Handles one of the runtime's inputs (see [`api::handle`] for every
    /// input of [`Inputs::next`]).
    pub fn handle(&mut self, input: runtime::Input) {
        self.runtime.handle(input);
        self.sync();
    }

    /// Tells the supervisor `event` (see [`Runtime::feed`]).
    pub fn feed(&mut self, event: Event) {
        let services_change = matches!(
            event,
            Event::Deploy(_) | Event::DeployAll(_) | Event::Remove(_)
        );
        self.runtime.feed(event);
        self.sync();
        if services_change {
            self.keep_pinned();
        }
    }

    /// Collects every exited child (see [`Runtime::reap`]).
    pub fn reap(&mut self) {
        self.runtime.reap();
        self.sync();
    }

    /// Queues disk work to run off the loop; the receiver gets the answer
    /// once it is done and applied (see [`store`]).
    pub fn store(&self, work: store::Work, then: store::Then) -> Receiver<Result<Value, ApiError>> {
        let (reply, answer) = smol::channel::bounded(1);
        let job = store::Job { work, then, reply };
        if let Err(
            smol::channel::TrySendError::Closed(job) | smol::channel::TrySendError::Full(job),
        ) = self.store_tx.try_send(job)
        {
            let _ = job.reply.try_send(Err(ApiError {
                code: code::STORAGE,
                message: "the storage task is gone".into(),
            }));
        }
        answer
    }

    /// Answers `answer` once `name` is ready or has failed, or after
    /// `timeout` with its state then (see [`wait`]).
    pub fn wait_for(&mut self, name: &str, timeout: Duration, answer: Answer) {
        let Some(state) = self.runtime.get(name).map(|v| v.state.clone()) else {
            let _ = answer.try_send(Err(ApiError::new(
                code::NO_SUCH_SERVICE,
                format!("no such service: {}", runtime::escape::field(name)),
            )));
            return;
        };
        match self.waits.add(name, &state, answer.clone()) {
            Some(id) => {
                self.runtime.arm_caller_timer(deadline_key(id), timeout);
                self.advance_wait(id);
            }
            None => {
                let _ = answer.try_send(Err(ApiError::new(
                    code::BUSY,
                    format!(
                        "too many calls wait for services ({}); try again or use --no-wait",
                        wait::MAX_WAITERS
                    ),
                )));
            }
        }
    }

    /// Takes what the runtime noticed and moves the waiting calls on.
    fn sync(&mut self) {
        loop {
            let notices = self.runtime.take_notices();
            if notices.is_empty() {
                return;
            }
            for notice in notices {
                match notice {
                    Notice::Changed { service, state } => {
                        if !self.waits.is_empty() {
                            for id in self.waits.of(&service) {
                                self.advance_wait_in(id, Some(&state));
                            }
                        }
                    }
                    Notice::ArtifactsWanted { service } => self.fetch_for(&service),
                    Notice::Timer(key) => {
                        let id = key / 2;
                        if key % 2 == 1 {
                            self.advance_wait(id);
                        } else {
                            self.settle_wait(id, Outcome::Timeout);
                        }
                    }
                }
            }
        }
    }

    /// Moves waiter `id` on with its service's state now.
    fn advance_wait(&mut self, id: u64) {
        self.advance_wait_in(id, None);
    }

    /// Moves waiter `id` on with its service in `state` (a state it went
    /// through, in the order it went through them), or in its state now.
    fn advance_wait_in(&mut self, id: u64, state: Option<&State>) {
        let Some(name) = self.waits.service(id).map(str::to_owned) else {
            return;
        };
        let now = self.runtime.now();
        let step = match self.runtime.get(&name) {
            Some(view) => {
                let held = view
                    .since
                    .map(|t| now.saturating_duration_since(t))
                    .unwrap_or_default();
                let checks = !view.service.health.is_empty();
                let state = state.unwrap_or(&view.state);
                // A start that failed for an artifact still being fetched
                // is not the outcome: the fetch is.
                if matches!(state, State::Backoff { .. }) && self.awaits_fetch(view.service) {
                    Step::Keep
                } else {
                    self.waits.step(id, state, view.service.kind, checks, held)
                }
            }
            // Removed while we waited.
            None => Step::Settle(Outcome::Failed),
        };
        match step {
            Step::Keep => {}
            Step::Steady(left) | Step::Drain(left) => {
                self.runtime.arm_caller_timer(steady_key(id), left)
            }
            Step::Settle(outcome) => self.settle_wait(id, outcome),
        }
    }

    /// Answers waiter `id` with `outcome` and the service's state.
    fn settle_wait(&mut self, id: u64, outcome: Outcome) {
        self.runtime.cancel_caller_timer(deadline_key(id));
        self.runtime.cancel_caller_timer(steady_key(id));
        let Some((name, answer)) = self.waits.take(id) else {
            return;
        };
        let value = api::views::settled(&self.runtime, &name, outcome);
        let _ = answer.try_send(Ok(value));
    }
}
