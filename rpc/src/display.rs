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

/// `text` with every character that could break a line or drive a
/// terminal escaped (`\n`, `\u{1b}`, `\u{202e}` …; the rule of
/// [`escape`]), for what comes from the network: a newline or a
/// terminal escape in it can never forge a row or repaint the screen.
pub fn printable(text: &str) -> String {
    escape::escape(text, usize::MAX)
}

/// A whole line on its way to the operator's terminal, escaped once more
/// at that sink: whatever a node or a beacon put anywhere in it is written
/// as `\u001b`, `\u202e` … . The form is JSON's own, so a `--json` line
/// stays valid JSON meaning the same (serde_json leaves DEL, the C1
/// controls and the bidi characters raw inside strings).
pub fn terminal(line: &str) -> String {
    if !line.chars().any(escape::needs_escape) {
        return line.to_owned();
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if escape::needs_escape(c) {
            // Every such character is in the Basic Multilingual Plane.
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// One log line: time, stream, text (control characters escaped: a
/// service's output cannot repaint the operator's terminal).
pub fn log_line(line: &Value) -> String {
    // A merged view's lines say whose they are.
    let service = match line.get("service").and_then(Value::as_str) {
        Some(name) => format!("[{}] ", printable(name)),
        None => String::new(),
    };
    format!(
        "{} {service}{} {}",
        text(line, "time"),
        text(line, "stream"),
        printable(&text(line, "text"))
    )
}

/// The strings of the array at `key`, escaped (non-strings are skipped).
pub fn strings(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(printable)
        .collect()
}

/// The width of the terminal on stdout, when stdout is one.
pub fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize it is given; fd 1 is open.
    let done = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut size) } == 0;
    (done && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// `lines` cut to `width` characters (the cut marked `…`), for a table on
/// a terminal: its last column gives way, rows never wrap.
pub fn fit(lines: Vec<String>, width: Option<usize>) -> Vec<String> {
    let Some(width) = width.filter(|w| *w > 1) else {
        return lines;
    };
    lines
        .into_iter()
        .map(|line| {
            if line.chars().count() <= width {
                line
            } else {
                let mut cut: String = line.chars().take(width - 1).collect();
                cut.push('…');
                cut
            }
        })
        .collect()
}

/// Column widths that fit every cell of `rows`.
fn widths(rows: &[Vec<String>]) -> Vec<usize> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    (0..columns)
        .map(|i| {
            rows.iter()
                .map(|row| row.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// `rows` (header first) as aligned text, each column as wide as its
/// widest cell, the last one unpadded.
pub fn table(rows: &[Vec<String>]) -> Vec<String> {
    let widths = widths(rows);
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

/// The `service.list` result as a table, header first, sized to its
/// contents (a long name widens its column instead of breaking the rows).
pub fn service_table(list: &Value) -> Vec<String> {
    let mut rows = vec![["SERVICE", "KIND", "STATE", "PID", "RESTARTS", "DETAIL"]
        .map(str::to_owned)
        .to_vec()];
    for s in list.as_array().into_iter().flatten() {
        rows.push(vec![
            printable(&text(s, "name")),
            text(s, "kind"),
            text(s, "state"),
            text(s, "pid"),
            text(s, "restarts"),
            printable(&text(s, "detail")),
        ]);
    }
    table(&rows)
}

/// `1h02m`, `3m05s`, `42s` for a number of seconds.
pub fn age(seconds: u64) -> String {
    match seconds {
        s if s >= 86_400 => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Service states that mean something is wrong on a node.
pub const PROBLEM_STATES: &[&str] = &["failed", "backoff", "unhealthy"];

/// One node of a fleet in one row, from its `node.info`: how long it has
/// been up, its spore version, and its services (`12: 11 ready, 1 failed`);
/// and whether anything there is wrong (a service in a [`PROBLEM_STATES`]
/// state, or a service file rejected at boot).
pub fn node_row(info: &Value) -> ([String; 3], bool) {
    let services = info.get("services").unwrap_or(&Value::Null);
    let by_state: Vec<(String, u64)> = services
        .get("by_state")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(state, n)| (state.clone(), n.as_u64().unwrap_or(0)))
        .collect();
    let rejected = info
        .get("service_file_errors")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let problem = rejected > 0
        || by_state
            .iter()
            .any(|(state, n)| *n > 0 && PROBLEM_STATES.contains(&state.as_str()));
    let mut counts: Vec<String> = by_state
        .iter()
        .map(|(state, n)| format!("{n} {}", printable(state)))
        .collect();
    if rejected > 0 {
        counts.push(format!("{rejected} file(s) rejected"));
    }
    let services = format!("{}: {}", text(services, "total"), counts.join(", "));
    (
        [
            age(info.get("uptime_s").and_then(Value::as_u64).unwrap_or(0)),
            printable(&text(info, "version")),
            services,
        ],
        problem,
    )
}

/// `service.status` as text: the fields a person looks for, then its last
/// lines of output.
pub fn status_text(status: &Value) -> Vec<String> {
    let mut out = vec![format!(
        "{} ({}, {})",
        printable(&text(status, "name")),
        text(status, "kind"),
        text(status, "source")
    )];
    let since = status
        .get("since_ms")
        .and_then(Value::as_u64)
        .map(|ms| format!(" for {}", age(ms / 1000)))
        .unwrap_or_default();
    out.push(format!(
        "  state:    {}{since}",
        printable(&text(status, "detail"))
    ));
    for fetch in status
        .get("fetching")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let bytes = |key| fetch.get(key).and_then(Value::as_u64).unwrap_or(0);
        let (held, size) = (bytes("held"), bytes("size"));
        let mib = |n: u64| n as f64 / f64::from(1u32 << 20);
        out.push(format!(
            "  fetching: {} {:.1} of {:.1} MiB ({}%)",
            printable(&text(fetch, "name")),
            mib(held),
            mib(size),
            held.saturating_mul(100) / size.max(1)
        ));
    }
    if let Some(pid) = status.get("pid").and_then(Value::as_u64) {
        out.push(format!("  pid:      {pid}"));
    }
    out.push(format!("  restarts: {}", text(status, "restarts")));
    if let Some(usage) = status.get("usage").and_then(usage_text) {
        out.push(format!("  usage:    {usage}"));
    }
    if status.get("last_exit").is_some_and(|e| !e.is_null()) {
        out.push(format!("  last run: {}", text(status, "last_exit")));
    }
    if status.get("last_error").is_some_and(|e| !e.is_null()) {
        out.push(format!(
            "  error:    {}",
            printable(&text(status, "last_error"))
        ));
    }
    if let Some(argv) = status.get("argv").and_then(Value::as_array) {
        let words: Vec<String> = argv
            .iter()
            .filter_map(Value::as_str)
            .map(printable)
            .collect();
        out.push(format!("  exec:     {}", words.join(" ")));
    }
    out.push(format!("  file:     {}", printable(&text(status, "file"))));
    if let Some(deps) = status.get("dependencies") {
        for key in ["requires", "after", "wants", "conflicts"] {
            let names = strings(deps, key);
            if !names.is_empty() {
                out.push(format!("  {key:<9} {}", names.join(", ")));
            }
        }
    }
    let lines: Vec<&Value> = status
        .get("lines")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    if !lines.is_empty() {
        out.push("  recent output:".into());
        out.extend(lines.into_iter().map(|l| format!("    {}", log_line(l))));
    }
    out
}

/// A byte count as a person reads it (`21.0 MiB`, powers of 1024).
pub fn size(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["bytes", "KiB", "MiB", "GiB"] {
        if value < 1024.0 {
            return if unit == "bytes" {
                format!("{bytes} bytes")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1024.0;
    }
    format!("{value:.1} TiB")
}

/// A service's `usage` (from its cgroup) on one line; None when the
/// kernel gave no figure.
fn usage_text(usage: &Value) -> Option<String> {
    let number = |key| usage.get(key).and_then(Value::as_u64);
    let mut parts = Vec::new();
    if let Some(memory) = number("memory_bytes") {
        let mut extra = Vec::new();
        if let Some(peak) = number("memory_peak_bytes") {
            extra.push(format!("peak {}", size(peak)));
        }
        if let Some(limit) = number("memory_max_bytes") {
            extra.push(format!("limit {}", size(limit)));
        }
        parts.push(if extra.is_empty() {
            format!("memory {}", size(memory))
        } else {
            format!("memory {} ({})", size(memory), extra.join(", "))
        });
    }
    if let Some(usec) = number("cpu_usec") {
        parts.push(format!("cpu {:.2} s", usec as f64 / 1e6));
    }
    if let Some(pids) = number("pids") {
        parts.push(match number("pids_max") {
            Some(most) => format!("{pids} pids (limit {most})"),
            None => format!("{pids} pids"),
        });
    }
    if let (Some(read), Some(written)) = (number("io_read_bytes"), number("io_write_bytes")) {
        parts.push(format!("io {} read, {} written", size(read), size(written)));
    }
    if let Some(kills) = number("oom_kills").filter(|&n| n > 0) {
        parts.push(format!("OOM kills {kills}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `node.info` as text.
pub fn info_text(info: &Value) -> Vec<String> {
    let mut out = vec![format!(
        "{}: spore {}, up {}{}",
        printable(&text(info, "hostname")),
        text(info, "version"),
        age(info.get("uptime_s").and_then(Value::as_u64).unwrap_or(0)),
        if info.get("pid1") == Some(&Value::Bool(true)) {
            ", PID 1"
        } else {
            ""
        }
    )];
    if let Some(services) = info.get("services") {
        let states: Vec<String> = services
            .get("by_state")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        out.push(format!(
            "  services: {} ({})",
            text(services, "total"),
            states.join(", ")
        ));
    }
    if let Some(resources) = info.get("resources") {
        let bytes = |key| resources.get(key).and_then(Value::as_u64);
        if let (Some(total), Some(available)) =
            (bytes("memory_total_bytes"), bytes("memory_available_bytes"))
        {
            out.push(format!(
                "  memory:   {} available of {}",
                size(available),
                size(total)
            ));
        }
        if let Some(pressure) = resources
            .get("pressure_some_avg10")
            .and_then(Value::as_object)
        {
            let parts: Vec<String> = pressure
                .iter()
                .filter_map(|(name, share)| Some(format!("{name} {:.1}%", share.as_f64()?)))
                .collect();
            out.push(format!(
                "  pressure: {} (some, last 10 s)",
                parts.join(", ")
            ));
        }
    }
    if let Some(errors) = info.get("service_file_errors").and_then(Value::as_u64) {
        if errors > 0 {
            out.push(format!(
                "  service files rejected at boot: {errors} (see `logs spore`)"
            ));
        }
    }
    if let Some(deploys) = info.get("deploys") {
        out.push(format!(
            "  deploys:  {} ({})",
            printable(&text(deploys, "dir")),
            if deploys.get("persistent") == Some(&Value::Bool(true)) {
                "kept across reboots"
            } else {
                "lost at reboot: RAM"
            }
        ));
    }
    if let Some(store) = info.get("artifacts") {
        let state = match store.get("error") {
            Some(error) => format!("unavailable: {}", printable(&error.to_string())),
            None => format!(
                "quota {} bytes, {}",
                store
                    .get("quota_bytes")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                if store.get("persistent") == Some(&Value::Bool(true)) {
                    "kept across reboots"
                } else {
                    "lost at reboot: RAM"
                }
            ),
        };
        out.push(format!(
            "  artifacts: {} ({state})",
            printable(&text(store, "dir"))
        ));
    }
    if let Some(rpc) = info.get("rpc") {
        let list = |key: &str| strings(rpc, key);
        let listening = list("listen");
        out.push(format!(
            "  rpc:      {}",
            if listening.is_empty() {
                "not listening".to_owned()
            } else {
                format!("listening on {}", listening.join(", "))
            }
        ));
        for pending in list("pending") {
            out.push(format!("            {pending}"));
        }
        for failed in list("failed") {
            out.push(format!("            not bound: {failed}"));
        }
        if rpc.get("node_key_fingerprint").is_some() {
            out.push(format!("  node key: {}", text(rpc, "node_key_fingerprint")));
        }
    }
    out
}

/// The outcome of start, stop, restart or deploy: one line per service,
/// and its last lines of output when it did not come up.
pub fn outcome_text(result: &Value) -> Vec<String> {
    let name = printable(&text(result, "name"));
    let detail = printable(&text(result, "detail"));
    let mut out = vec![match result.get("outcome").and_then(Value::as_str) {
        Some("ready") => match result.get("pid").and_then(Value::as_u64) {
            Some(pid) => format!("{name}: {detail} (pid {pid})"),
            None => format!("{name}: {detail}"),
        },
        Some("timeout") => format!("{name}: not settled before the timeout: {detail}"),
        Some(_) => format!("{name}: FAILED: {detail}"),
        None if result.get("unchanged") == Some(&Value::Bool(true)) => {
            format!("{name}: unchanged ({detail})")
        }
        None => format!("{name}: {detail}"),
    }];
    if result.get("outcome").is_some_and(|o| o != "ready") {
        if result.get("last_exit").is_some_and(|e| !e.is_null()) {
            out.push(format!("  last run: {}", text(result, "last_exit")));
        }
        for line in result
            .get("lines")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.push(format!("  {}", log_line(line)));
        }
    }
    out
}

/// What `node.reload` changed.
pub fn reload_text(result: &Value) -> Vec<String> {
    let names = |key: &str| strings(result, key);
    let mut out = Vec::new();
    for (key, word) in [
        ("added", "added"),
        ("changed", "changed"),
        ("removed", "removed"),
    ] {
        for name in names(key) {
            out.push(format!("{name}: {word}"));
        }
    }
    for error in names("errors") {
        out.push(format!("rejected (the running definition stays): {error}"));
    }
    if out.is_empty() {
        out.push("nothing changed".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_fetch_under_way_shows_in_status_with_its_progress() {
        let status = json!({
            "name": "mycelium", "kind": "daemon", "source": "deployed",
            "detail": "backoff", "restarts": 0, "file": "/x",
            "fetching": [{ "name": "mycelium\u{1b}[2J", "held": 12 << 20, "size": 34 << 20 }],
        });
        let text = status_text(&status);
        assert!(
            text.contains(&"  fetching: mycelium\\u{1b}[2J 12.0 of 34.0 MiB (35%)".to_owned()),
            "{text:?}"
        );
    }

    #[test]
    fn usage_and_the_nodes_memory_show_in_status_and_info() {
        let status = json!({
            "name": "hog", "kind": "daemon", "source": "deployed",
            "detail": "running", "restarts": 1, "file": "/x",
            "usage": { "memory_bytes": 22_020_096, "memory_peak_bytes": 23_068_672,
                "memory_max_bytes": 33_554_432, "cpu_usec": 120_000, "pids": 3,
                "pids_max": 32, "io_read_bytes": 4096, "io_write_bytes": 0, "oom_kills": 1 },
        });
        let text = status_text(&status);
        assert!(
            text.contains(&"  usage:    memory 21.0 MiB (peak 22.0 MiB, limit 32.0 MiB), cpu 0.12 s, 3 pids (limit 32), io 4.0 KiB read, 0 bytes written, OOM kills 1".to_owned()),
            "{text:?}"
        );
        let bare = json!({ "name": "x", "usage": {} });
        assert!(!status_text(&bare).iter().any(|l| l.contains("usage")));
        let info = json!({ "hostname": "n1", "version": "0.1.0", "uptime_s": 5,
            "resources": { "memory_total_bytes": 268_435_456_u64,
                "memory_available_bytes": 201_326_592_u64,
                "pressure_some_avg10": { "cpu": 0.0, "io": 1.25, "memory": 0.5 } } });
        let text = info_text(&info);
        assert!(
            text.contains(&"  memory:   192.0 MiB available of 256.0 MiB".to_owned()),
            "{text:?}"
        );
        assert!(
            text.contains(
                &"  pressure: cpu 0.0%, io 1.2%, memory 0.5% (some, last 10 s)".to_owned()
            ),
            "{text:?}"
        );
    }

    #[test]
    fn a_node_row_counts_its_services_and_says_when_one_is_wrong() {
        let info = json!({ "version": "0.1.0", "uptime_s": 3700,
            "services": { "total": 3, "by_state": { "ready": 2, "failed": 1 } } });
        let (row, problem) = node_row(&info);
        assert_eq!(row, ["1h01m", "0.1.0", "3: 1 failed, 2 ready"]);
        assert!(problem);
        let fine = json!({ "version": "0.1.0", "uptime_s": 5,
            "services": { "total": 2, "by_state": { "ready": 1, "succeeded": 1 } } });
        assert!(!node_row(&fine).1);
        let rejected =
            json!({ "services": { "total": 0, "by_state": {} }, "service_file_errors": 2 });
        let (row, problem) = node_row(&rejected);
        assert!(problem && row[2].contains("2 file(s) rejected"), "{row:?}");
    }

    #[test]
    fn tables_fit_the_terminal_by_cutting_the_end_of_rows() {
        let rows = vec![
            "web   ready  a long detail".to_owned(),
            "db    ready".to_owned(),
        ];
        assert_eq!(fit(rows.clone(), None), rows);
        assert_eq!(
            fit(rows.clone(), Some(15)),
            ["web   ready  a…", "db    ready"]
        );
    }

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
