//! Command lines: split into words the way a shell does, without a shell.

use serde::Serialize;

/// How a service's process is started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Command {
    /// Run `argv[0]` with these arguments directly (execvp, no shell).
    Argv {
        /// Program and arguments; never empty.
        argv: Vec<String>,
    },
    /// The line uses shell syntax (pipes, `&&`, redirections, `$VAR`), so it
    /// runs as `/bin/sh -c LINE`, as zinit ran every exec line.
    Shell {
        /// The command line, unchanged.
        line: String,
    },
}

impl Command {
    /// Parses one command line: plain words become [`Command::Argv`]; a line
    /// with shell operators outside quotes becomes [`Command::Shell`].
    pub fn parse(line: &str) -> Result<Self, SplitError> {
        let split = split_words(line)?;
        if split.needs_shell {
            return Ok(Command::Shell {
                line: line.trim().to_owned(),
            });
        }
        if split.words.is_empty() {
            return Err(SplitError::Empty);
        }
        Ok(Command::Argv { argv: split.words })
    }

    /// The argv to execute: the words, or `/bin/sh -c LINE`.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Argv { argv } => argv.clone(),
            Command::Shell { line } => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        }
    }
}

/// Why a command line could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A quote was opened and never closed.
    #[error("unterminated {0} quote")]
    UnterminatedQuote(&'static str),
    /// A backslash at the very end of the line escapes nothing.
    #[error("trailing backslash")]
    TrailingBackslash,
    /// Nothing but whitespace.
    #[error("no words")]
    Empty,
}

/// The one variable spore expands itself in a line that needs no shell:
/// the directory of a service's `[[artifacts]]`, replaced at each start
/// (`$ARTIFACTS_DIRECTORY` or `${ARTIFACTS_DIRECTORY}`, quoted or not).
pub const ARTIFACTS_DIRECTORY: &str = "$ARTIFACTS_DIRECTORY";

/// After a `$`: takes `ARTIFACTS_DIRECTORY` (not followed by more of a
/// name) or `{ARTIFACTS_DIRECTORY}` from `chars`; false, taking nothing,
/// for any other variable.
fn take_artifacts_directory(chars: &mut std::str::Chars<'_>) -> bool {
    let rest = chars.as_str();
    let name = "ARTIFACTS_DIRECTORY";
    let taken = if rest.starts_with("{ARTIFACTS_DIRECTORY}") {
        name.len() + 2
    } else if rest.starts_with(name)
        && !rest
            .get(name.len()..)
            .and_then(|tail| tail.chars().next())
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        name.len()
    } else {
        return false;
    };
    for _ in 0..taken {
        chars.next();
    }
    true
}

/// The words of a line and whether it needs a real shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Words after quote removal.
    pub words: Vec<String>,
    /// True when an operator such as `|`, `&`, `;`, `<`, `>`, `(`, `)`, `$` or
    /// a backquote appears outside quotes (or `$`/backquote inside double
    /// quotes), which only a shell can interpret.
    pub needs_shell: bool,
}

/// Splits `line` into words following POSIX shell quoting (sh(1) "Quoting"):
/// whitespace separates words; single quotes keep everything literally;
/// double quotes keep everything but `\"`, `\\`, `\$`, `` \` `` and
/// backslash-newline; a backslash outside quotes escapes the next character.
pub fn split_words(line: &str) -> Result<Split, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut needs_shell = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(inner) => word.push(inner),
                        None => return Err(SplitError::UnterminatedQuote("single")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped @ ('"' | '\\' | '$' | '`')) => word.push(escaped),
                            Some('\n') => {}
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => return Err(SplitError::UnterminatedQuote("double")),
                        },
                        Some('$') if take_artifacts_directory(&mut chars) => {
                            word.push_str(ARTIFACTS_DIRECTORY);
                        }
                        Some(inner @ ('$' | '`')) => {
                            needs_shell = true;
                            word.push(inner);
                        }
                        Some(inner) => word.push(inner),
                        None => return Err(SplitError::UnterminatedQuote("double")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(escaped) => {
                    in_word = true;
                    word.push(escaped);
                }
                None => return Err(SplitError::TrailingBackslash),
            },
            '$' if take_artifacts_directory(&mut chars) => {
                in_word = true;
                word.push_str(ARTIFACTS_DIRECTORY);
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' => {
                needs_shell = true;
                in_word = true;
                word.push(c);
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(Split { words, needs_shell })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split_words(line).unwrap().words
    }

    #[test]
    fn plain_words_split_on_whitespace() {
        assert_eq!(words("  /bin/echo  a\tb  "), ["/bin/echo", "a", "b"]);
    }

    #[test]
    fn single_quotes_keep_everything_literally() {
        assert_eq!(
            words(r#"/bin/sh -c 'test -f "x" || echo \n'"#),
            ["/bin/sh", "-c", r#"test -f "x" || echo \n"#]
        );
    }

    #[test]
    fn double_quotes_honour_only_their_escapes() {
        assert_eq!(words(r#"a "b \"c\" \\ \n""#), ["a", r#"b "c" \ \n"#]);
    }

    #[test]
    fn backslash_escapes_outside_quotes() {
        assert_eq!(words(r"a\ b c\'d"), ["a b", "c'd"]);
    }

    #[test]
    fn adjacent_quoted_parts_join_one_word() {
        assert_eq!(words(r#"--x='a b'"c d"e"#), [r#"--x=a bc de"#]);
        assert_eq!(words("''"), [""]);
    }

    #[test]
    fn the_artifacts_directory_needs_no_shell_and_other_variables_do() {
        for line in [
            "$ARTIFACTS_DIRECTORY/mycelium --peers tcp://a:9651",
            "${ARTIFACTS_DIRECTORY}/mycelium --peers tcp://a:9651",
            "\"$ARTIFACTS_DIRECTORY/mycelium\" --peers tcp://a:9651",
        ] {
            let split = split_words(line).unwrap();
            assert!(!split.needs_shell, "{line}");
            assert_eq!(
                split.words,
                ["$ARTIFACTS_DIRECTORY/mycelium", "--peers", "tcp://a:9651"],
                "{line}"
            );
        }
        for line in [
            "$ARTIFACTS_DIRECTORYX/a",
            "$HOME/a",
            "\"${ARTIFACTS_DIRECTORY\"",
        ] {
            assert!(split_words(line).unwrap().needs_shell, "{line}");
        }
    }

    #[test]
    fn quoted_operators_do_not_need_a_shell() {
        let split = split_words("/usr/bin/nginx -g 'daemon off;'").unwrap();
        assert!(!split.needs_shell);
        assert_eq!(split.words, ["/usr/bin/nginx", "-g", "daemon off;"]);
    }

    #[test]
    fn unquoted_operators_need_a_shell() {
        for line in [
            "a && b",
            "a | b",
            "a > f",
            "echo $HOME",
            "a; b",
            "echo \"$X\"",
        ] {
            assert!(split_words(line).unwrap().needs_shell, "{line}");
        }
        assert_eq!(
            Command::parse("udevadm trigger && udevadm settle").unwrap(),
            Command::Shell {
                line: "udevadm trigger && udevadm settle".into()
            }
        );
    }

    #[test]
    fn ipv6_brackets_are_plain_characters() {
        let command =
            Command::parse("/usr/local/bin/mycelium --tun-url http://[::1]:8989").unwrap();
        assert_eq!(
            command.argv(),
            ["/usr/local/bin/mycelium", "--tun-url", "http://[::1]:8989"]
        );
    }

    #[test]
    fn broken_lines_are_errors() {
        assert_eq!(
            split_words("a 'b"),
            Err(SplitError::UnterminatedQuote("single"))
        );
        assert_eq!(
            split_words("a \"b"),
            Err(SplitError::UnterminatedQuote("double"))
        );
        assert_eq!(split_words("a \\"), Err(SplitError::TrailingBackslash));
        assert_eq!(Command::parse("   "), Err(SplitError::Empty));
    }

    #[test]
    fn shell_command_runs_through_sh() {
        let command = Command::parse("a | b").unwrap();
        assert_eq!(command.argv(), ["/bin/sh", "-c", "a | b"]);
    }
}
