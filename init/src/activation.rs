//! Socket activation (hero_proc's xinet): a service with `[[sockets]]` is
//! started by the first connection to one of them, not at boot.
//!
//! spore binds every socket when the service is loaded ([`listener`]) and
//! keeps it bound while the service's sockets stay as they are (a deploy
//! that changes only its command keeps them; one that changes a socket
//! rebinds). Then, per service ([`service`]):
//! - a socket in `pass` mode is handed to the service at each start (fd 3
//!   on, `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`: see
//!   `runtime::passing`); while the service is down spore waits for the
//!   socket to be readable, starts the service, and leaves the accepting
//!   to it;
//! - a socket in `proxy` mode is accepted by spore ([`proxy`]), which
//!   starts the service, waits for it to be ready and joins the
//!   connection to the service's `backend` address;
//! - with `idle_stop`, the service is stopped once it has had no
//!   connection that long.
//!
//! Starts are bounded: more than [`service::TRIGGER_BURST`] within
//! [`service::TRIGGER_WINDOW`] (a service that fails at once, a client
//! that retries without pause) stop the activation until the service is
//! started by hand or its file changes, as systemd's trigger limit does.
//! Nothing here wakes up while services are idle: the tasks wait on the
//! sockets and on the services' state changes.

mod activated;
mod listener;
mod proxy;
mod service;

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use runtime::journal;
use svc::service::Socket;

use nodeapi::NodeApi;

/// What activation needs of the node (the node implements it; tests may
/// too).
pub trait Host {
    /// The node API, unless it is busy.
    fn api(&self) -> Option<std::cell::RefMut<'_, NodeApi>>;
    /// The executor every task runs on.
    fn executor(&self) -> &'static smol::LocalExecutor<'static>;
    /// The node's activated sockets.
    fn activation(&self) -> &Activation;
}

/// Runs `f` on `host`'s node API; None when it is busy.
fn with_api<T>(host: &dyn Host, f: impl FnOnce(&mut NodeApi) -> T) -> Option<T> {
    let mut api = host.api()?;
    Some(f(&mut api))
}

/// The sockets bound for one service, and the tasks that serve them.
struct Bound {
    sockets: Vec<Socket>,
    /// Each socket's listener, by its `listen` text (a live re-exec hands
    /// them on).
    listeners: Vec<(String, Rc<listener::Listener>)>,
    /// Dropped (cancelled, their listeners closed) when the service's
    /// sockets change or it is removed.
    _tasks: Vec<smol::Task<()>>,
}

/// A listening socket handed across a live re-exec: its service, its
/// `listen` text and its descriptor (open across the exec).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CarriedSocket {
    /// The service.
    pub service: String,
    /// Its `listen` endpoint, as written (`tcp:[::]:8080`).
    pub listen: String,
    /// The descriptor.
    pub fd: i32,
}

/// The node's activated sockets.
#[derive(Default)]
pub struct Activation {
    bound: RefCell<HashMap<String, Bound>>,
    /// Listeners a live re-exec handed over, taken as their services'
    /// sockets are bound again (closed once that is done).
    adopted: RefCell<Vec<(String, String, OwnedFd)>>,
}

impl Activation {
    /// Takes the listeners a live re-exec handed over (their services
    /// bind them instead of new ones, so no connection is refused).
    pub fn adopt(&self, sockets: Vec<CarriedSocket>) {
        let mut adopted = self.adopted.borrow_mut();
        for socket in sockets {
            if socket.fd < 3 {
                continue;
            }
            // SAFETY: the old binary kept this descriptor open across the
            // exec for us, and nothing else in this process owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(socket.fd) };
            adopted.push((socket.service, socket.listen, fd));
        }
    }

    /// The listeners bound now, for a live re-exec to hand on.
    pub fn carried(&self) -> Vec<CarriedSocket> {
        let Ok(bound) = self.bound.try_borrow() else {
            return Vec::new();
        };
        bound
            .iter()
            .flat_map(|(service, b)| {
                b.listeners
                    .iter()
                    .map(move |(listen, listener)| CarriedSocket {
                        service: service.clone(),
                        listen: listen.clone(),
                        fd: listener.raw_fd(),
                    })
            })
            .collect()
    }

    /// The listener a re-exec handed over for `service`'s `listen`.
    fn take_adopted(&self, service: &str, listen: &str) -> Option<OwnedFd> {
        let mut adopted = self.adopted.borrow_mut();
        let at = adopted
            .iter()
            .position(|(s, l, _)| s == service && l == listen)?;
        Some(adopted.swap_remove(at).2)
    }
}

/// Binds the sockets of every service that has some, and follows the
/// services' changes from then on. Runs before the first service starts,
/// so a service started at boot is handed its sockets.
pub fn start(node: Rc<dyn Host>) {
    let Some(changed) = with_api(&*node, |api| api.runtime_mut().watch_definitions()) else {
        return;
    };
    sync(&node);
    let left = std::mem::take(&mut *node.activation().adopted.borrow_mut());
    for (service, listen, _) in left {
        journal::note(format_args!(
            "activation: {service}: {listen} handed over by the re-exec is no longer its socket; closed"
        ));
    }
    let weak = Rc::downgrade(&node);
    node.executor()
        .spawn(async move {
            while changed.recv().await.is_ok() {
                let Some(node) = weak.upgrade() else {
                    return;
                };
                sync(&node);
            }
        })
        .detach();
}

/// Makes the bound sockets match the services' `[[sockets]]`: binds what
/// is new, closes what is gone, keeps what is unchanged.
fn sync(node: &Rc<dyn Host>) {
    let Some(wanted) = with_api(&**node, |api| {
        api.supervisor()
            .services()
            .into_iter()
            .filter(|s| !s.sockets.is_empty())
            .map(|s| (s.name.clone(), s.sockets.clone()))
            .collect::<HashMap<String, Vec<Socket>>>()
    }) else {
        return;
    };
    let Ok(mut bound) = node.activation().bound.try_borrow_mut() else {
        return;
    };
    let gone: Vec<String> = bound
        .iter()
        .filter(|(name, b)| wanted.get(*name) != Some(&b.sockets))
        .map(|(name, _)| name.clone())
        .collect();
    for name in gone {
        bound.remove(&name);
        with_api(&**node, |api| {
            api.runtime_mut().hand_sockets(&name, Vec::new())
        });
        if !wanted.contains_key(&name) {
            journal::note(format_args!("activation: {name}: its sockets are closed"));
        }
    }
    for (name, sockets) in wanted {
        if bound.contains_key(&name) {
            continue;
        }
        let (listeners, tasks) = service::serve(node, &name, &sockets);
        bound.insert(
            name,
            Bound {
                sockets,
                listeners,
                _tasks: tasks,
            },
        );
    }
}
