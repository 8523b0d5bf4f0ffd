//! How each verb's answer reads as text: the tables, lines and sentences
//! sporectl and `spore` print (with `--json` the answer is printed as it
//! came instead).

use serde_json::Value;

use super::Verb;
use crate::display::{self, log_line, service_table, text};

/// `why`'s answer: the chain in one sentence, then each link with its
/// last lines.
fn why_text(result: &Value) -> Vec<String> {
    let mut out = vec![display::printable(&text(result, "summary"))];
    for link in result
        .get("chain")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(format!(
            "  {}: {}",
            display::printable(&text(link, "name")),
            display::printable(&text(link, "detail"))
        ));
        for line in link
            .get("lines")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            out.push(format!("    | {}", display::printable(line)));
        }
    }
    out
}

/// `tree`'s answer as `systemctl list-dependencies` draws one.
/// `cat`: a comment naming the file, as `systemctl cat` heads each unit,
/// then the file's lines (escaped: a file may hold anything).
fn cat_text(result: &Value) -> Vec<String> {
    let file = result.get("file").and_then(Value::as_str).unwrap_or("");
    let source = result.get("source").and_then(Value::as_str).unwrap_or("");
    std::iter::once(format!(
        "# {} ({})",
        display::printable(file),
        display::printable(source)
    ))
    .chain(
        result
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .lines()
            .map(display::printable),
    )
    .collect()
}

fn tree_text(result: &Value) -> Vec<String> {
    fn draw(entry: &Value, prefix: &str, last: bool, top: bool, out: &mut Vec<String>) {
        let relation = text(entry, "relation");
        let mut line = if top {
            String::new()
        } else {
            format!("{prefix}{}", if last { "└─ " } else { "├─ " })
        };
        line.push_str(&display::printable(&text(entry, "name")));
        line.push_str(&format!("  {}", display::printable(&text(entry, "detail"))));
        if !top && relation != "requires" {
            line.push_str(&format!(" ({relation})"));
        }
        if entry.get("again") == Some(&Value::Bool(true)) {
            line.push_str(" …");
        }
        out.push(line);
        let children: Vec<&Value> = entry
            .get("dependencies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        let inner = if top {
            String::new()
        } else {
            format!("{prefix}{}", if last { "   " } else { "│  " })
        };
        for (i, child) in children.iter().enumerate() {
            draw(child, &inner, i + 1 == children.len(), false, out);
        }
    }
    let mut out = Vec::new();
    for entry in result
        .get("tree")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        draw(entry, "", true, true, &mut out);
    }
    let omitted = result.get("omitted").and_then(Value::as_u64).unwrap_or(0);
    if omitted > 0 {
        out.push(format!(
            "({omitted} more entries left out: ask for one service's tree)"
        ));
    }
    out
}

/// The answer of `verb` for people, one line each.
pub fn render(verb: Verb, result: &Value) -> Vec<String> {
    let names = |key: &str| display::strings(result, key);
    match verb {
        Verb::List => display::fit(service_table(result), display::terminal_width()),
        Verb::Logs => {
            let omitted = result.get("omitted").and_then(Value::as_u64).unwrap_or(0);
            let note = (omitted > 0).then(|| {
                format!("({omitted} older lines left out: an answer holds at most 768 KiB; ask for fewer with -n)")
            });
            note.into_iter()
                .chain(
                    result
                        .get("lines")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(log_line),
                )
                .collect()
        }
        Verb::Status => display::status_text(result),
        Verb::Why => why_text(result),
        Verb::Tree => tree_text(result),
        Verb::Cat => cat_text(result),
        Verb::IsActive | Verb::IsFailed => vec![text(result, "state")],
        Verb::Info => display::info_text(result),
        Verb::Metrics => {
            let node = result.get("hostname").and_then(Value::as_str).unwrap_or("");
            crate::metrics::render(&[crate::metrics::Scraped {
                node,
                figures: Some(result),
            }])
            .lines()
            .map(str::to_owned)
            .collect()
        }
        Verb::Start | Verb::Stop | Verb::Restart | Verb::Deploy => display::outcome_text(result),
        Verb::Remove | Verb::SecretRm => vec![format!("{}: removed", text(result, "name"))],
        Verb::Reload => display::reload_text(result),
        Verb::Reboot => vec!["reboot: accepted; the node stops its services in order".into()],
        Verb::Poweroff => vec!["poweroff: accepted; the node stops its services in order".into()],
        Verb::SecretSet => {
            let mut out = vec![format!("{}: stored", text(result, "name"))];
            out.extend(
                names("restarted")
                    .into_iter()
                    .map(|s| format!("{s}: restarted to load it")),
            );
            out.extend(
                names("signalled")
                    .into_iter()
                    .map(|s| format!("{s}: told to read it again")),
            );
            out
        }
        Verb::ArtifactPut => vec![format!(
            "{}: sha256:{} ({} bytes) stored",
            display::printable(&text(result, "file")),
            display::printable(&text(result, "sha256")),
            result.get("size").and_then(Value::as_u64).unwrap_or(0)
        )],
        Verb::ArtifactRm => vec![format!(
            "sha256:{}: {}",
            display::printable(&text(result, "sha256")),
            if result.get("removed") == Some(&Value::Bool(true)) {
                "removed"
            } else {
                "not held"
            }
        )],
        Verb::ArtifactList => crate::upload::list_text(result),
        Verb::Update => vec![format!(
            "image sha256:{} written to slot {} ({}) and read back; the next boot tries it once, and spore there confirms it or the old slot comes back",
            display::printable(&text(result, "sha256")),
            display::printable(&text(result, "slot")),
            display::printable(&text(result, "boot_entry")),
        )],
        Verb::Reexec => vec![format!(
            "spore {} (build {}) answered the check; the node execs it in place now, keeping every service",
            display::printable(&text(result, "version")),
            display::printable(text(result, "build_id").get(..12).unwrap_or_default()),
        )],
        Verb::SecretList => result
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(display::printable)
            .collect(),
        Verb::Discover => result
            .get("methods")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|m| {
                format!(
                    "{:<16} {:<7} {}",
                    text(m, "name"),
                    text(m, "x-spore-role"),
                    text(m, "summary")
                )
            })
            .collect(),
    }
}
