//! Errors in service files: each names the file, line, column and field.

use std::fmt;
use std::path::PathBuf;

/// One problem with one service file, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The service file the problem is in.
    pub file: PathBuf,
    /// 1-based line of the offending key or value (1 when it is the whole file).
    pub line: usize,
    /// 1-based column in characters.
    pub column: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.kind
        )
    }
}

impl std::error::Error for ConfigError {}

/// What is wrong with a service file. Each variant carries the field it is
/// about and enough context to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The file could not be read.
    #[error("cannot read service file: {0}")]
    Read(String),
    /// The file is not valid TOML.
    #[error("invalid TOML: {0}")]
    Syntax(String),
    /// A key that the schema does not know.
    #[error("unknown key `{key}` in {section}{}", hint(suggestion.as_deref(), known))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it was, e.g. `[dependencies]`.
        section: String,
        /// The nearest known key, when one is close.
        suggestion: Option<String>,
        /// Every key the section accepts.
        known: Vec<&'static str>,
    },
    /// A value of the wrong TOML type.
    #[error("`{field}` in {section} must be {expected}, found {found}")]
    WrongType {
        /// The key.
        field: String,
        /// Where it was.
        section: String,
        /// What the schema wants, e.g. "a string".
        expected: &'static str,
        /// The TOML type that was there.
        found: &'static str,
    },
    /// A key that must be present is absent.
    #[error("missing `{field}` in {section}")]
    Missing {
        /// The key.
        field: &'static str,
        /// Where it belongs.
        section: String,
    },
    /// Neither `[service]` nor `[target]`, or both.
    #[error("a service file needs exactly one of [service] or [target]")]
    NoServiceSection,
    /// `exec` has no words.
    #[error("`exec` in [service] is empty")]
    EmptyExec,
    /// `exec` cannot be split into words.
    #[error("`{field}` cannot be split into words: {reason}")]
    BadCommand {
        /// The key holding the command line.
        field: String,
        /// Why splitting failed.
        reason: String,
    },
    /// `name` differs from the file name.
    #[error("service name `{name}` does not match its file name `{expected}.toml`")]
    NameMismatch {
        /// The name in the file.
        name: String,
        /// The file's stem.
        expected: String,
    },
    /// A name that cannot be a file name or appear in a plan.
    #[error("invalid service name `{0}`: use letters, digits, `-`, `_` and `.` (at most 64, not starting with `.`)")]
    InvalidName(String),
    /// A value outside the allowed set, e.g. `status = "strat"`.
    #[error("unknown {field} `{value}`; expected one of {}{}", expected.join(", "), hint(suggestion.as_deref(), &[]))]
    UnknownValue {
        /// The key.
        field: String,
        /// The value as written.
        value: String,
        /// The nearest allowed value, when one is close.
        suggestion: Option<String>,
        /// Every allowed value.
        expected: Vec<&'static str>,
    },
    /// Zero where zero means nothing.
    #[error("`{field}` in {section} must be greater than zero")]
    Zero {
        /// The key.
        field: &'static str,
        /// Where it was.
        section: String,
    },
    /// A number or value outside its range.
    #[error("`{field}` in {section} {message}")]
    OutOfRange {
        /// The key.
        field: &'static str,
        /// Where it was.
        section: String,
        /// What the range is.
        message: String,
    },
    /// A dependency on a service that is not loaded.
    #[error("`{dependency}` in [dependencies].{relation} is not a known service{}", rejected_note(*rejected))]
    MissingDependency {
        /// The missing service.
        dependency: String,
        /// `requires`, `after` or `conflicts`.
        relation: &'static str,
        /// True when the service exists but was rejected for its own errors.
        rejected: bool,
    },
    /// The same service under both `requires` and `conflicts`.
    #[error("`{0}` is listed under both [dependencies].requires and [dependencies].conflicts")]
    RequiresConflicts(String),
    /// A socket's address that another service listens on already.
    #[error("`listen` in [[sockets]]: {endpoint} is service `{by}`'s already; two services cannot listen on one address")]
    ListenTaken {
        /// The address.
        endpoint: String,
        /// The service it was given to first (by name).
        by: String,
    },
    /// A dependency cycle; the services are in order and the first repeats last.
    #[error("dependency cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The services on the cycle, in order, ending with the first again.
        cycle: Vec<String>,
    },
}

fn hint(suggestion: Option<&str>, known: &[&'static str]) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None if known.is_empty() => String::new(),
        None => format!("; known keys: {}", known.join(", ")),
    }
}

fn rejected_note(rejected: bool) -> &'static str {
    if rejected {
        " (it was rejected)"
    } else {
        ""
    }
}
