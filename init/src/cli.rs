//! Command-line parsing for `spore` (lexopt: tiny, no proc macros, keeps the
//! static binary small).

use std::ffi::OsString;
use std::path::PathBuf;

/// Usage text printed by `--help` and after a usage error.
pub const USAGE: &str = "\
usage: spore check DIR [--json]   validate service files and print the start plan
       spore --version | --help";

/// What the user asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    /// `spore check DIR [--json]`.
    Check {
        /// The directory of service files.
        dir: PathBuf,
        /// Machine-readable output.
        json: bool,
    },
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let command = match parser.next()? {
        Some(Value(command)) => command.string()?,
        Some(Long("help") | Short('h')) => return Ok(Invocation::Help),
        Some(Long("version") | Short('V')) => return Ok(Invocation::Version),
        Some(other) => return Err(other.unexpected()),
        None => return Err("missing a command".into()),
    };
    match command.as_str() {
        "check" => {
            let mut dir = None;
            let mut json = false;
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("json") => json = true,
                    Long("help") | Short('h') => return Ok(Invocation::Help),
                    Value(value) if dir.is_none() => dir = Some(PathBuf::from(value)),
                    other => return Err(other.unexpected()),
                }
            }
            let dir = dir.ok_or("`check` needs a directory")?;
            Ok(Invocation::Check { dir, json })
        }
        other => Err(format!("unknown command `{other}`").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn check_takes_a_directory_and_json_flag() {
        assert_eq!(
            parse(args(&["check", "d", "--json"])).unwrap(),
            Invocation::Check {
                dir: "d".into(),
                json: true
            }
        );
    }

    #[test]
    fn check_without_directory_is_a_usage_error() {
        assert!(parse(args(&["check"])).is_err());
        assert!(parse(args(&["frobnicate"])).is_err());
        assert!(parse(args(&["check", "a", "b"])).is_err());
    }
}
