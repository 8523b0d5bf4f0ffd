//! Making spore the subreaper of what it starts, outside PID 1 (`spore
//! run`, `spore exec`): orphans of its services are reparented to it.

use runtime::journal;

/// PR_SET_CHILD_SUBREAPER: orphans of our services become our children, so
/// we reap them and see process groups empty (prctl(2)).
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        journal::note(format_args!(
            "PR_SET_CHILD_SUBREAPER: {}",
            std::io::Error::last_os_error()
        ));
    }
}
