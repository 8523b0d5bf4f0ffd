//! One activated service: its sockets' tasks, what starts it, and what
//! stops it when idle.

use std::rc::Rc;
use std::time::Duration;

use runtime::journal;
use smol::future::FutureExt;
use svc::service::{Socket, SocketMode};
use svc::supervisor::{Event, State};

use super::activated::{is_up, Activated};
use super::listener::Listener;
use super::{with_api, Host};

/// While a passed socket's service runs with `idle_stop`, its socket is
/// looked at for new connections at most this often (the service accepts
/// them: a waiting one stays readable until it does).
const ACTIVITY_GRAIN: Duration = Duration::from_secs(1);

/// Binds `sockets` for `name` and starts their tasks; a socket that
/// cannot be bound is logged and left out.
#[allow(clippy::type_complexity)]
pub fn serve(
    node: &Rc<dyn Host>,
    name: &str,
    sockets: &[Socket],
) -> (Vec<(String, Rc<Listener>)>, Vec<smol::Task<()>>) {
    let activated = Rc::new(Activated::new(
        name,
        node,
        sockets.iter().find_map(|s| s.idle_stop),
    ));
    let mut passed: Vec<(Rc<Listener>, String, String)> = Vec::new();
    let mut handed = Vec::new();
    let mut tasks = Vec::new();
    let mut listeners = Vec::new();
    for socket in sockets {
        let listen = socket.listen.to_string();
        let bound = match node.activation().take_adopted(name, &listen) {
            Some(fd) => Listener::adopt(&socket.listen, fd),
            None => Listener::bind(&socket.listen),
        };
        let listener = match bound {
            Ok(listener) => Rc::new(listener),
            Err(error) => {
                journal::note(format_args!(
                    "activation: {name}: cannot listen on {}: {error}",
                    socket.listen
                ));
                continue;
            }
        };
        listeners.push((listen, listener.clone()));
        match &socket.mode {
            SocketMode::Pass => match listener.duplicate() {
                Ok(fd) => {
                    handed.push((fd, socket.name.clone()));
                    passed.push((listener, socket.listen.to_string(), socket.name.clone()));
                }
                Err(error) => journal::note(format_args!(
                    "activation: {name}: {}: {error}",
                    socket.listen
                )),
            },
            SocketMode::Proxy { backend } => {
                tasks.push(node.executor().spawn(super::proxy::accept(
                    activated.clone(),
                    listener,
                    socket.listen.to_string(),
                    backend.clone(),
                )));
            }
        }
        journal::note(format_args!(
            "activation: {name}: listening on {} ({})",
            socket.listen,
            match socket.mode {
                SocketMode::Pass => "passed to it",
                SocketMode::Proxy { .. } => "proxied to it",
            }
        ));
    }
    with_api(&**node, |api| api.runtime_mut().hand_sockets(name, handed));
    if !passed.is_empty() {
        tasks.push(
            node.executor()
                .spawn(watch_passed(activated.clone(), passed)),
        );
    }
    if activated.idle_stop.is_some() {
        tasks.push(node.executor().spawn(stop_when_idle(activated)));
    }
    (listeners, tasks)
}

/// Waits until any of `sockets` has a connection waiting; which one.
async fn any_readable(sockets: &[(Rc<Listener>, String, String)]) -> Option<String> {
    type Wait<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + 'a>>;
    let mut waits: Vec<Wait<'_>> = sockets
        .iter()
        .map(|(listener, on, _)| -> Wait<'_> {
            Box::pin(async move { listener.readable().await.ok().map(|()| on.clone()) })
        })
        .collect();
    if waits.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(move |cx| {
        for wait in waits.iter_mut() {
            if let std::task::Poll::Ready(which) = wait.as_mut().poll(cx) {
                return std::task::Poll::Ready(which);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Passed sockets: while the service is down, the first connection
/// waiting starts it; while it is up the service accepts (with
/// `idle_stop`, spore notes when connections come, at most once a second).
async fn watch_passed(activated: Rc<Activated>, sockets: Vec<(Rc<Listener>, String, String)>) {
    let Some(changes) = activated.changes() else {
        return;
    };
    loop {
        let Some(state) = activated.state() else {
            return;
        };
        if is_up(&state) {
            // Started otherwise: the limit starts over.
            activated.resume();
            if activated.idle_stop.is_none() {
                if changes.recv().await.is_err() {
                    return;
                }
                continue;
            }
            let seen = async { any_readable(&sockets).await.is_some() }
                .or(async {
                    let _ = changes.recv().await;
                    false
                })
                .await;
            if seen {
                activated.touch();
                smol::Timer::after(ACTIVITY_GRAIN).await;
            }
            continue;
        }
        if activated.halted() {
            if changes.recv().await.is_err() {
                return;
            }
            continue;
        }
        let came = async { any_readable(&sockets).await }
            .or(async {
                let _ = changes.recv().await;
                None
            })
            .await;
        if let Some(on) = came {
            activated.trigger(&on);
        }
    }
}

/// `idle_stop`: once the service has been up with no connection for that
/// long (and none proxied open), it is stopped.
async fn stop_when_idle(activated: Rc<Activated>) {
    let (Some(idle_stop), Some(changes)) = (activated.idle_stop, activated.changes()) else {
        return;
    };
    let mut was_up = false;
    loop {
        let Some(state) = activated.state() else {
            return;
        };
        let up = matches!(state, State::Running | State::Ready | State::Unhealthy);
        if !up {
            was_up = false;
            if changes.recv().await.is_err() {
                return;
            }
            continue;
        }
        if !was_up {
            // Up now (by a connection or by hand): idle from here.
            was_up = true;
            activated.touch();
        }
        let idle = activated.idle();
        if activated.open.get() == 0 && idle >= idle_stop {
            journal::note(format_args!(
                "activation: {}: no connection for {} ms; stopping it (idle_stop)",
                activated.name,
                idle_stop.as_millis()
            ));
            activated.feed(Event::Stop(activated.name.clone()));
            continue;
        }
        let left = idle_stop
            .saturating_sub(idle)
            .max(Duration::from_millis(10));
        async {
            smol::Timer::after(left).await;
        }
        .or(async {
            let _ = changes.recv().await;
        })
        .await;
    }
}
