//! `spore`: PID 1 and service supervisor for fleets of bare Linux nodes.
//!
//! Subcommands:
//! - `spore check DIR [--json]`: validate a directory of service files and
//!   print the start plan, or every error.

mod check;
mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli::Invocation::Check { dir, json }) => check::run(&dir, json),
        Ok(cli::Invocation::Help) => {
            println!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(cli::Invocation::Version) => {
            println!("spore {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}\n\n{}", cli::USAGE);
            ExitCode::from(2)
        }
    }
}
