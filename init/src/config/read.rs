//! Reading spore.toml: the whole file, or at boot what of it parses (a
//! bad key costs only that key), and every error located as `spore check`
//! prints it (`FILE:LINE:COLUMN: …`, with the nearest key for a typo).

use std::path::Path;

use super::NodeConfig;

/// Reads `path`; returns defaults plus an error message when it is missing
/// or invalid (`FILE:LINE:COLUMN: …`, with the nearest key for a typo).
pub fn load(path: &Path) -> (NodeConfig, Option<String>) {
    match std::fs::read_to_string(path) {
        Ok(text) => match parse(path, &text) {
            Ok(config) => (config, None),
            Err(error) => match salvage(&text) {
                Some((config, dropped)) if !dropped.is_empty() => (
                    config,
                    Some(format!(
                        "{error}; {} left out, the rest applies",
                        dropped.join(", ")
                    )),
                ),
                _ => (
                    NodeConfig::default(),
                    Some(format!("{error}; booting with defaults")),
                ),
            },
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => (NodeConfig::default(), None),
        Err(error) => (
            NodeConfig::default(),
            Some(format!(
                "cannot read {}: {error}; booting with defaults",
                path.display()
            )),
        ),
    }
}

/// The configuration without the keys that do not parse, and their names
/// (`[rpc] max_conections`, `module`, `[[mount]] 2`); None when the text is
/// not TOML at all. A table keeps every key of its own that parses, so a
/// typo beside `listen` never puts the node back on the default listeners;
/// an entry of an array of tables (`[[mount]]`) is kept without its bad
/// keys when it parses so, and left out whole when it does not (a mount
/// without its target).
fn salvage(text: &str) -> Option<(NodeConfig, Vec<String>)> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let mut kept = toml::Table::new();
    let mut dropped = Vec::new();
    for (key, value) in table {
        if wrapped(&key, value.clone()).is_none() {
            kept.insert(key, value);
            continue;
        }
        match value {
            toml::Value::Table(fields) => {
                let (good, bad) =
                    without_bad_keys(fields, |t| wrapped(&key, toml::Value::Table(t.clone())));
                match good {
                    Some(good) => {
                        dropped.extend(bad.iter().map(|field| format!("[{key}] {field}")));
                        kept.insert(key, toml::Value::Table(good));
                    }
                    None => dropped.push(format!("[{key}]")),
                }
            }
            toml::Value::Array(entries)
                if !entries.is_empty() && entries.iter().all(toml::Value::is_table) =>
            {
                let mut good_entries = Vec::new();
                for (at, entry) in entries.into_iter().enumerate() {
                    let toml::Value::Table(fields) = entry else {
                        continue;
                    };
                    let (good, bad) = without_bad_keys(fields, |t| {
                        wrapped(
                            &key,
                            toml::Value::Array(vec![toml::Value::Table(t.clone())]),
                        )
                    });
                    match good {
                        Some(good) => {
                            dropped.extend(
                                bad.iter()
                                    .map(|field| format!("[[{key}]] {} {field}", at + 1)),
                            );
                            good_entries.push(toml::Value::Table(good));
                        }
                        None => dropped.push(format!("[[{key}]] {}", at + 1)),
                    }
                }
                kept.insert(key, toml::Value::Array(good_entries));
            }
            _ => dropped.push(format!("`{key}`")),
        }
    }
    let config = kept.try_into::<NodeConfig>().ok()?;
    Some((config, dropped))
}

/// `value` as the only top-level `key` of spore.toml, written out as TOML:
/// None when that parses, else the error and the text it points into.
fn wrapped(key: &str, value: toml::Value) -> Option<(toml::de::Error, String)> {
    let mut alone = toml::Table::new();
    alone.insert(key.to_owned(), value);
    let text = toml::to_string(&alone).unwrap_or_default();
    toml::from_str::<NodeConfig>(&text)
        .err()
        .map(|error| (error, text))
}

/// `fields` with the keys the parser names as wrong removed one by one
/// (each error's span points at the key or its value), and those keys;
/// None for the table when it still does not parse without them (a
/// required key is missing, say).
fn without_bad_keys(
    mut fields: toml::Table,
    check: impl Fn(&toml::Table) -> Option<(toml::de::Error, String)>,
) -> (Option<toml::Table>, Vec<String>) {
    let mut bad = Vec::new();
    while let Some((error, text)) = check(&fields) {
        let start = error.span().map_or(0, |span| span.start);
        let line_start = text
            .get(..start)
            .and_then(|t| t.rfind('\n'))
            .map_or(0, |i| i + 1);
        let field = text
            .get(line_start..)
            .and_then(|line| line.split_once('='))
            .map(|(name, _)| name.trim().trim_matches('"').to_owned());
        match field {
            Some(field) if fields.remove(&field).is_some() => bad.push(field),
            _ => return (None, bad),
        }
    }
    (Some(fields), bad)
}

/// Parses spore.toml's `text`; the error names `path`, line, column, the
/// table, and the nearest key when one is misspelt.
pub(super) fn parse(path: &Path, text: &str) -> Result<NodeConfig, String> {
    toml::from_str::<NodeConfig>(text).map_err(|error| located(path, text, &error))
}

/// Every error of spore.toml's `text` (as `spore check` reports them, as
/// cargo does: all at once), each located as [`parse`] locates one: after
/// each error the key it points at is blanked out (its line, and the
/// lines its value continues on; a whole table when the error is at its
/// header), and the text is read again. A syntax error ends the list: what
/// follows it cannot be read reliably.
pub fn errors(path: &Path, text: &str) -> Vec<String> {
    let mut text = text.to_owned();
    let mut found: Vec<((usize, usize), String)> = Vec::new();
    // Each round blanks at least one line, so this bound is never the limit
    // for a real file; it only keeps a pathological one finite.
    for _ in 0..100 {
        let Err(error) = toml::from_str::<NodeConfig>(&text) else {
            break;
        };
        let start = error.span().map_or(0, |span| span.start);
        let at = svc::position::LineIndex::new(&text).position(start);
        found.push(((at.line, at.column), located(path, &text, &error)));
        let syntax = toml::from_str::<toml::Table>(&text).is_err();
        let next = error.span().and_then(|span| blank_out(&text, span.start));
        match next {
            Some(next) if !syntax && next != text => text = next,
            _ => break,
        }
    }
    // In the file's order, as the reader goes through it.
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, message)| message).collect()
}

/// `text` with the entry at byte `at` replaced by blank lines (so every
/// other line keeps its number): a `key = value` line and its value's
/// continuation lines, or a `[table]` header and its keys.
fn blank_out(text: &str, at: usize) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut offset = 0;
    let mut first = None;
    for (index, line) in lines.iter().enumerate() {
        if at < offset + line.len() {
            first = Some(index);
            break;
        }
        offset += line.len();
    }
    let first = first.or_else(|| lines.len().checked_sub(1))?;
    let starts_entry = |line: &str| {
        let line = line.trim_start();
        line.is_empty() || line.starts_with('#') || line.starts_with('[') || line.contains('=')
    };
    let header = lines
        .get(first)
        .is_some_and(|l| l.trim_start().starts_with('['));
    let mut last = first;
    while let Some(line) = lines.get(last + 1) {
        let next_header = line.trim_start().starts_with('[');
        if (header && next_header) || (!header && starts_entry(line)) {
            break;
        }
        last += 1;
    }
    Some(
        lines
            .iter()
            .enumerate()
            .map(|(index, line)| {
                if (first..=last).contains(&index) {
                    "\n"
                } else {
                    line
                }
            })
            .collect(),
    )
}

fn located(path: &Path, text: &str, error: &toml::de::Error) -> String {
    let start = error.span().map_or(0, |span| span.start);
    let at = svc::position::LineIndex::new(text).position(start);
    let message = error.message().trim().to_owned();
    // serde says "unknown field `x`, expected one of `a`, `b`": say where,
    // and what was probably meant.
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let hint = match quoted.split_first() {
        Some((unknown, known)) if message.starts_with("unknown field") => {
            svc::suggest::nearest(unknown, known)
                .map(|near| format!("; did you mean `{near}`?"))
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    // The header of the table the error is in: the last one before its
    // position, or the one its own line is (an error about a whole table).
    let line_end = text
        .get(start..)
        .and_then(|rest| rest.find('\n'))
        .map_or(text.len(), |at| start + at);
    let table = text
        .get(..line_end)
        .unwrap_or_default()
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|header| format!(" in {header}"))
        .unwrap_or_default();
    format!(
        "{}:{}:{}: {message}{table}{hint}",
        path.display(),
        at.line,
        at.column
    )
}
