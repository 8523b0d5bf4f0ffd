//! Fault injection for tests: in debug builds, `SPORE_FAULT=NAME` makes the
//! step called NAME panic, so tests can prove PID 1 survives a panic in any
//! step of the boot. Release builds compile it to nothing.

/// Panics here when `SPORE_FAULT` names this point (debug builds only).
#[cfg(debug_assertions)]
#[allow(clippy::panic)] // the whole point: a panic on demand, never in release
pub fn point(name: &str) {
    if std::env::var("SPORE_FAULT").is_ok_and(|wanted| wanted == name) {
        panic!("fault injected at {name} (SPORE_FAULT)");
    }
}

/// Release builds: no fault points.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_name: &str) {}
