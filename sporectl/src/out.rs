//! sporectl's standard output. A reader that goes away (`sporectl discover
//! | head -1`) is not an error of sporectl's: the rest of the output has
//! nowhere to go, so sporectl ends quietly with status 0 instead of
//! panicking as `println!` does on a closed pipe.

use std::io::Write;

/// Writes one line to stdout, escaped for the terminal
/// ([`rpc::display::terminal`]: nothing a node sent can drive it);
/// exits 0 at once if stdout is closed.
pub fn line(text: std::fmt::Arguments<'_>) {
    let text = rpc::display::terminal(&text.to_string());
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    if let Err(error) = written {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("sporectl: cannot write to stdout: {error}");
        std::process::exit(1);
    }
}

/// Writes one line to stderr, escaped as [`line`] escapes (errors echo
/// what a node or a beacon said).
pub fn complain(text: std::fmt::Arguments<'_>) {
    eprintln!("{}", rpc::display::terminal(&text.to_string()));
}

/// `eprintln!` through [`complain`].
macro_rules! complain {
    ($($arg:tt)*) => {
        crate::out::complain(format_args!($($arg)*))
    };
}

/// `println!` through [`line`].
macro_rules! say {
    ($($arg:tt)*) => {
        crate::out::line(format_args!($($arg)*))
    };
}
