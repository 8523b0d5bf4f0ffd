//! How results look to people, shared by `sporectl` and `spore`'s local
//! client commands.

use serde_json::Value;

/// A field as text: strings bare, null or absent as `-`, anything else as JSON.
pub fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// `text` with every control character escaped (`\n`, `\u{1b}` …), for
/// what comes from the network (a beacon's records): a newline or a
/// terminal escape in it can never forge a row or repaint the screen.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().collect()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One log line: time, stream, text.
pub fn log_line(line: &Value) -> String {
    format!(
        "{} {} {}",
        text(line, "time"),
        text(line, "stream"),
        text(line, "text")
    )
}

/// The `service.list` result as a table, header first.
pub fn service_table(list: &Value) -> Vec<String> {
    let mut rows = vec![format!(
        "{:<24} {:<9} {:<10} {:>8}  DETAIL",
        "SERVICE", "KIND", "STATE", "PID"
    )];
    for s in list.as_array().into_iter().flatten() {
        rows.push(format!(
            "{:<24} {:<9} {:<10} {:>8}  {}",
            text(s, "name"),
            text(s, "kind"),
            text(s, "state"),
            text(s, "pid"),
            text(s, "detail")
        ));
    }
    rows
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("node1"), "node1");
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable("x\u{1b}[2J"), "x\\u{1b}[2J");
        assert_eq!(printable("t\u{9b}1m"), "t\\u{9b}1m");
    }

    #[test]
    fn tables_and_lines_render_missing_fields_as_dashes() {
        let rows = service_table(
            &json!([{ "name": "web", "kind": "daemon", "state": "ready", "pid": 42, "detail": "ready" }, { "name": "job" }]),
        );
        assert_eq!(rows.len(), 3);
        assert!(rows[1].starts_with("web") && rows[1].contains("42"));
        assert!(rows[2].contains(" - "));
        assert_eq!(
            log_line(&json!({ "time": "t", "stream": "stdout", "text": "hi" })),
            "t stdout hi"
        );
    }
}
