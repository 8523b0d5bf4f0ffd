//! Duties only PID 1 has: bring the machine up before any service, and take
//! it down after the last one. Every failure is logged and survived.

mod block_id;
pub mod cgroups;
mod configured_mounts;
pub mod consoles;
pub mod hostname;
mod modules;
mod mounts;
mod network;
mod shutdown;

pub use shutdown::{finish, last_resort};

use std::io::Write;

use runtime::journal;

use crate::config::NodeConfig;

/// Steps 1, 3, 4, 5 of the boot sequence: filesystems and console, hostname,
/// kernel modules, loopback and the NIC. Runs before services are loaded.
pub fn early_mounts_and_console() {
    crate::fault::point("early-mounts");
    mounts::mount_early();
    console();
    consoles::use_every_console();
    if let Err(error) = std::env::set_current_dir("/") {
        journal::note(format_args!("chdir /: {error}"));
    }
    // Ctrl-alt-del sends SIGINT to PID 1 instead of rebooting at once.
    if let Err(error) = nix::sys::reboot::set_cad_enabled(false) {
        journal::note(format_args!("reboot(RB_DISABLE_CAD): {error}"));
    }
}

/// Modules, `[[mount]]` filesystems and network from the node
/// configuration (the hostname follows, once the state directory is there:
/// see [`hostname`]).
pub fn configure(config: &NodeConfig, timeline: &mut crate::timeline::Timeline) {
    crate::fault::point("configure");
    modules::load_all(&config.modules);
    timeline.mark("modules");
    configured_mounts::mount_all(&config.mount);
    timeline.mark("mounts");
    network::loopback_up();
    for net in config.network.iter().flat_map(|n| n.interfaces()) {
        network::configure(net);
    }
    timeline.mark("network");
    // The clock, once the network is up and before any service: call-home's
    // registration is refused from a clock far off.
    crate::sntp::start(crate::sntp::Sources::of(config), true);
    timeline.mark("clock");
}

/// stdin, stdout and stderr on /dev/console.
fn console() {
    use std::os::fd::AsRawFd;
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        Ok(console) => {
            for target in 0..=2 {
                // SAFETY: dup2 onto the standard descriptors; `console` stays
                // open until after the calls.
                if unsafe { libc::dup2(console.as_raw_fd(), target) } < 0 {
                    journal::note(format_args!(
                        "dup2 console to {target}: {}",
                        std::io::Error::last_os_error()
                    ));
                }
            }
        }
        Err(error) => journal::note(format_args!("/dev/console: {error}")),
    }
    let _ = std::io::stderr().flush();
}
