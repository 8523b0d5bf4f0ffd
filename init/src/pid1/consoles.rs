//! Every console the kernel was given. `/dev/console` is only the last
//! `console=` of the command line (README's `console=ttyS0 console=tty0`
//! would leave a Serial-over-LAN user with the kernel's lines and none of
//! spore's); `/sys/class/tty/console/active` names them all.

use std::os::unix::fs::OpenOptionsExt;

use runtime::journal;

/// Where the kernel lists its consoles.
const ACTIVE: &str = "/sys/class/tty/console/active";

/// At most this many consoles are written to.
const MAX_CONSOLES: usize = 8;

/// Sends spore's lines to every console the kernel lists, when there are
/// several (with one, /dev/console is it already). Failures are logged; the
/// lines then stay on /dev/console.
pub fn use_every_console() {
    let active = match std::fs::read_to_string(ACTIVE) {
        Ok(active) => active,
        Err(error) => {
            journal::note(format_args!(
                "{ACTIVE}: {error}; writing to /dev/console only"
            ));
            return;
        }
    };
    let names = console_names(&active);
    if names.len() < 2 {
        return;
    }
    let mut files = Vec::new();
    let mut opened = Vec::new();
    for name in names {
        let path = format!("/dev/{name}");
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
        {
            Ok(file) => {
                files.push(file);
                opened.push(name);
            }
            Err(error) => journal::note(format_args!("console {path}: {error}")),
        }
    }
    if files.len() < 2 {
        return;
    }
    journal::use_consoles(files);
    journal::note(format_args!("console: writing to {}", opened.join(", ")));
}

/// The device names in `active` (`tty0 ttyS0`), each once, only names a
/// device can have (letters and digits: nothing that leaves /dev/).
fn console_names(active: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in active.split_whitespace() {
        let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric());
        if plain && !names.iter().any(|n| n == name) && names.len() < MAX_CONSOLES {
            names.push(name.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_once_each_and_only_device_names() {
        assert_eq!(console_names("tty0 ttyS0\n"), ["tty0", "ttyS0"]);
        assert_eq!(console_names("ttyS0 ttyS0"), ["ttyS0"]);
        assert_eq!(console_names("../sda ttyS1 tty/x"), ["ttyS1"]);
        assert!(console_names("").is_empty());
        let many = (0..20)
            .map(|i| format!("ttyS{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(console_names(&many).len(), MAX_CONSOLES);
    }
}
