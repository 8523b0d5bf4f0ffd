//! spore's documentation for `man` and for shells: `spore man` prints a
//! manual page (roff, section 8) made from the same usage text `--help`
//! prints, and `spore completions bash|zsh|fish` a script that completes its
//! commands. One source, so neither can drift from the parser.

use crate::usage::{COMMANDS, USAGE};

/// Shells a completion script is made for.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish"];

/// Text set in roff so that no line of it is read as a request (`.` or `'`
/// first) and no backslash as an escape.
fn roff(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = line.replace('\\', "\\e").replace('-', "\\-");
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The manual page: name, synopsis (the usage text, verbatim), the exit
/// statuses, files, and where the rest is.
pub fn page() -> String {
    let (synopsis, rest) = USAGE.split_once("\ncommands:").unwrap_or((USAGE, ""));
    let (commands, signals) = rest.split_once("\n\n").unwrap_or((rest, ""));
    format!(
        ".TH SPORE 8 \"\" \"spore {version}\" \"System Administration\"\n\
         .SH NAME\n\
         spore \\- init (PID 1) and supervisor for fleets of bare Linux nodes\n\
         .SH SYNOPSIS\n\
         .nf\n{synopsis}\n.fi\n\
         .SH COMMANDS\n\
         Each command talks to the spore on this machine over its control socket, with the verbs and answers of\n\
         .BR sporectl (1).\n\
         .PP\n.nf\n{commands}\n.fi\n\
         .SH SIGNALS\n{signals}\n\
         .SH EXIT STATUS\n\
         0 done; 1 an error answer, a service that did not come up, a rejected file; 2 usage or a local problem;\n\
         3 no connection to spore. As systemctl's:\n\
         .B status\n\
         exits 3 when a service does not run and 4 when it is unknown;\n\
         .B is\\-active\n\
         exits 0 when all run, else 3;\n\
         .B is\\-failed\n\
         exits 0 when one has failed, else 1.\n\
         .SH FILES\n\
         .TP\n.I /etc/spore/spore.toml\nthe node's configuration\n\
         .TP\n.I /etc/spore/services/\nthe image's service files\n\
         .TP\n.I /var/lib/spore/\nthe node key, deployed services, secrets\n\
         .TP\n.I /run/spore/spore.sock\nthe control socket\n\
         .SH SEE ALSO\n\
         .BR sporectl (1)\n",
        version = env!("CARGO_PKG_VERSION"),
        synopsis = roff(synopsis.trim_start_matches("usage:").trim_matches('\n')),
        commands = roff(commands.trim_matches('\n')),
        signals = roff(signals.trim()),
    )
}

/// The completion script for `shell`, or None for a shell not in [`SHELLS`].
pub fn completions(shell: &str) -> Option<String> {
    let words = COMMANDS.join(" ");
    let script = match shell {
        "bash" => format!(
            "# spore completion for bash: source it, or put it in /etc/bash_completion.d/spore\n\
             _spore() {{\n\
             \x20   local cur=${{COMP_WORDS[COMP_CWORD]}}\n\
             \x20   if [ \"$COMP_CWORD\" -eq 1 ]; then\n\
             \x20       COMPREPLY=( $(compgen -W \"{words} --socket --json --help --version\" -- \"$cur\") )\n\
             \x20   else\n\
             \x20       COMPREPLY=( $(compgen -f -- \"$cur\") )\n\
             \x20   fi\n\
             }}\n\
             complete -F _spore spore\n"
        ),
        "zsh" => format!(
            "#compdef spore\n\
             # spore completion for zsh: put it in a directory of $fpath as _spore\n\
             _arguments '1:command:({words})' '*::argument:_files'\n"
        ),
        "fish" => format!(
            "# spore completion for fish: put it in ~/.config/fish/completions/spore.fish\n\
             complete -c spore -f -n __fish_use_subcommand -a '{words}'\n"
        ),
        _ => return None,
    };
    Some(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_text_cannot_issue_requests() {
        assert_eq!(
            roff(".hidden\n'also\nplain \\n"),
            "\\&.hidden\n\\&'also\nplain \\en"
        );
        assert_eq!(roff("--json"), "\\-\\-json");
    }

    #[test]
    fn every_command_is_in_the_page_and_the_scripts() {
        let page = page();
        assert!(page.starts_with(".TH SPORE 8"));
        for shell in SHELLS {
            let script = completions(shell).unwrap();
            for command in COMMANDS {
                assert!(script.contains(command), "{shell}: {command}");
            }
        }
        assert!(completions("tcsh").is_none());
    }
}
