//! The dashboard's pages as HTML, from what the beacon and the nodes
//! answered. Pure: no I/O, so each page is tested from JSON alone.
//!
//! Every string that came from a node or the beacon is made printable,
//! cut to a length and HTML-escaped ([`text`]); names in links are
//! percent-encoded ([`encode`]). The pages have no script: they read
//! the same with JavaScript off, and the actions are forms.

use serde_json::Value;

/// The longest name, version or state shown.
const SHORT: usize = 120;
/// The longest log line or error shown.
const LONG: usize = 2_000;
/// Seconds between reloads of the overview and node pages.
pub const REFRESH_S: u32 = 15;

/// The CSS, served as `/TOKEN/style.css` (the policy allows no inline
/// style).
pub const STYLE: &str = include_str!("style.css");

/// What a service may be told to do from the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `service.start`.
    Start,
    /// `service.stop`.
    Stop,
    /// `service.restart`.
    Restart,
}

impl Action {
    /// The action a path segment names.
    pub fn from_word(word: &str) -> Option<Self> {
        match word {
            "start" => Some(Self::Start),
            "stop" => Some(Self::Stop),
            "restart" => Some(Self::Restart),
            _ => None,
        }
    }

    /// Its path segment and its name on a button.
    pub fn word(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
        }
    }
}

/// One node as the pages show it.
pub struct NodeView {
    /// What names it in the dashboard's paths: its hostname, or with
    /// `--node` the address given.
    pub key: String,
    /// The beacon's record of it (none with `--node`).
    pub record: Option<Value>,
    /// Its `node.metrics`, or why there are none.
    pub metrics: Result<Value, String>,
}

impl NodeView {
    /// Its services from `node.metrics` (none when it did not answer).
    fn services(&self) -> &[Value] {
        self.metrics
            .as_ref()
            .ok()
            .and_then(|m| m.get("services"))
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// How many of its services are in trouble.
    fn failing(&self) -> usize {
        self.services().iter().filter(|s| failing(s)).count()
    }

    /// Its name: as the beacon lists it, or with `--node` as it says it
    /// (else the address).
    fn hostname(&self) -> String {
        if self.record.is_some() {
            return self.key.clone();
        }
        self.metrics
            .as_ref()
            .ok()
            .and_then(|m| m.get("hostname"))
            .and_then(Value::as_str)
            .unwrap_or(&self.key)
            .to_owned()
    }
}

/// Whether a service's state means trouble (failed, backoff, unhealthy).
pub fn failing(service: &Value) -> bool {
    service
        .get("state")
        .and_then(Value::as_str)
        .is_some_and(|state| rpc::display::PROBLEM_STATES.contains(&state))
}

/// Text from outside, made printable, cut to `max` characters and
/// escaped for HTML.
pub fn text(raw: &str, max: usize) -> String {
    let printable = escape::escape(raw, max);
    let mut out = String::with_capacity(printable.len());
    for c in printable.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A field of `value` as short text (`-` when it has none).
fn field(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => text(s, SHORT),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "-".to_owned(),
    }
}

/// `name` for a path segment: every byte but `A-Za-z0-9._-` as `%XX`.
pub fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A path segment back to its name; None when it is not valid
/// percent-encoded UTF-8.
pub fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A page around `body`: its title, the style sheet under `base`, and a
/// reload every `refresh` seconds when asked.
pub fn layout(base: &str, title: &str, body: &str, refresh: Option<u32>) -> String {
    let refresh = refresh
        .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">"))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}<title>{title}</title>\
         <link rel=\"stylesheet\" href=\"{base}/style.css\"></head>\
         <body><header><a class=\"home\" href=\"{base}/\">spore</a> <span>{title}</span></header><main>\n{body}</main></body></html>\n"
    )
}

/// Bytes as MiB, or `-`.
fn memory(service: &Value) -> String {
    match service.get("memory_bytes").and_then(Value::as_u64) {
        Some(bytes) => format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0)),
        None => "-".to_owned(),
    }
}

/// CPU time in seconds, or `-`.
fn cpu(service: &Value) -> String {
    match service.get("cpu_usec").and_then(Value::as_u64) {
        Some(usec) => format!("{:.2} s", usec as f64 / 1e6),
        None => "-".to_owned(),
    }
}

/// A service's state as a labelled cell.
fn state_cell(service: &Value) -> String {
    let class = if failing(service) { "bad" } else { "ok" };
    format!("<td class=\"{class}\">{}</td>", field(service, "state"))
}

/// A service's state, readiness, restarts, last exit code, CPU and
/// memory, as table cells.
fn figures(service: &Value) -> String {
    format!(
        "{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        state_cell(service),
        field(service, "ready"),
        field(service, "restarts"),
        field(service, "last_exit_code"),
        cpu(service),
        memory(service),
    )
}

/// How long ago `unix` was, from `now`.
fn ago(now: u64, unix: Option<u64>) -> String {
    match unix {
        Some(t) if t > 0 => format!("{} ago", rpc::display::age(now.saturating_sub(t))),
        _ => "-".to_owned(),
    }
}

/// How long a node's spore has run, from its start time.
fn uptime(now: u64, node: &NodeView) -> String {
    let start = node
        .metrics
        .as_ref()
        .ok()
        .and_then(|m| m.get("start_time_s"))
        .and_then(Value::as_u64);
    match start {
        Some(start) if start > 0 => rpc::display::age(now.saturating_sub(start)),
        _ => "-".to_owned(),
    }
}

/// The version a node runs, with its build and boot slot when known.
fn version(node: &NodeView) -> String {
    let registration = node.record.as_ref().and_then(|r| r.get("registration"));
    let metrics = node.metrics.as_ref().ok();
    let version = metrics
        .and_then(|m| m.get("version"))
        .or_else(|| registration.and_then(|r| r.get("version")))
        .and_then(Value::as_str)
        .unwrap_or("-");
    let build = metrics
        .and_then(|m| m.get("build_id"))
        .or_else(|| registration.and_then(|r| r.get("build_id")))
        .and_then(Value::as_str)
        .map(|b| format!(" {}", b.get(..8).unwrap_or(b)))
        .unwrap_or_default();
    let slot = registration
        .and_then(|r| r.get("boot_slot"))
        .and_then(Value::as_str)
        .map(|s| format!(" slot {s}"))
        .unwrap_or_default();
    text(&format!("{version}{build}{slot}"), SHORT)
}

/// The first screen: what is wrong first (unreachable nodes, services in
/// trouble), then every node, then every service, failing first.
pub fn overview(base: &str, nodes: &[NodeView], now: u64, note: &str) -> String {
    let mut body = String::new();
    let down = nodes.iter().filter(|n| n.metrics.is_err()).count();
    let in_trouble: usize = nodes.iter().map(NodeView::failing).sum();
    body.push_str(&format!(
        "<p class=\"counts\">{} node(s), <span class=\"{}\">{down} unreachable</span>, <span class=\"{}\">{in_trouble} service(s) failing</span></p>\n",
        nodes.len(),
        if down > 0 { "bad" } else { "ok" },
        if in_trouble > 0 { "bad" } else { "ok" },
    ));
    if !note.is_empty() {
        body.push_str(&format!("<p class=\"note\">{}</p>\n", text(note, LONG)));
    }
    // What is wrong, first.
    let mut trouble = String::new();
    for node in nodes {
        let link = format!("{base}/node/{}", encode(&node.key));
        match &node.metrics {
            Err(error) => trouble.push_str(&format!(
                "<tr><td><a href=\"{link}\">{}</a></td><td>-</td><td class=\"bad\">unreachable</td><td colspan=\"2\">{}</td></tr>\n",
                text(&node.key, SHORT),
                text(error, LONG)
            )),
            Ok(_) => {
                for service in node.services().iter().filter(|s| failing(s)) {
                    trouble.push_str(&format!(
                        "<tr><td><a href=\"{link}\">{}</a></td><td>{}</td>{}<td>{}</td><td>{}</td></tr>\n",
                        text(&node.key, SHORT),
                        field(service, "name"),
                        state_cell(service),
                        field(service, "restarts"),
                        field(service, "last_exit_code"),
                    ));
                }
            }
        }
    }
    body.push_str("<h2>Needs attention</h2>\n");
    if trouble.is_empty() {
        body.push_str("<p class=\"ok\" id=\"all-well\">Every node answered and no service is failed, in backoff or unhealthy.</p>\n");
    } else {
        body.push_str("<table id=\"trouble\"><thead><tr><th>node</th><th>service</th><th>state</th><th>restarts</th><th>last exit</th></tr></thead><tbody>\n");
        body.push_str(&trouble);
        body.push_str("</tbody></table>\n");
    }
    // Every node.
    body.push_str("<h2>Nodes</h2>\n<table id=\"nodes\"><thead><tr><th>node</th><th>status</th><th>version</th><th>last heartbeat</th><th>uptime</th><th>services</th><th>failing</th></tr></thead><tbody>\n");
    for node in nodes {
        let (status, class) = if node.metrics.is_ok() {
            ("up", "ok")
        } else {
            ("unreachable", "bad")
        };
        let heartbeat = ago(
            now,
            node.record
                .as_ref()
                .and_then(|r| r.get("last_seen"))
                .and_then(Value::as_u64),
        );
        let started = uptime(now, node);
        let count = node.failing();
        body.push_str(&format!(
            "<tr><td><a href=\"{base}/node/{}\">{}</a></td><td class=\"{class}\">{status}</td><td>{}</td><td>{heartbeat}</td><td>{started}</td><td>{}</td><td class=\"{}\">{count}</td></tr>\n",
            encode(&node.key),
            text(&node.hostname(), SHORT),
            version(node),
            node.services().len(),
            if count > 0 { "bad" } else { "ok" },
        ));
    }
    body.push_str("</tbody></table>\n");
    // Every service, failing first.
    let mut rows: Vec<(bool, &NodeView, &Value)> = nodes
        .iter()
        .flat_map(|n| n.services().iter().map(move |s| (!failing(s), n, s)))
        .collect();
    rows.sort_by_key(|(ok, _, _)| *ok);
    body.push_str("<h2>Services</h2>\n<table id=\"services\"><thead><tr><th>node</th><th>service</th><th>state</th><th>ready</th><th>restarts</th><th>last exit</th><th>cpu</th><th>memory</th></tr></thead><tbody>\n");
    for (_, node, service) in rows {
        body.push_str(&format!(
            "<tr><td><a href=\"{base}/node/{}\">{}</a></td><td>{}</td>{}</tr>\n",
            encode(&node.key),
            text(&node.key, SHORT),
            field(service, "name"),
            figures(service),
        ));
    }
    body.push_str("</tbody></table>\n");
    layout(base, "fleet", &body, Some(REFRESH_S))
}

/// One node: its facts, its services with their actions (failing first,
/// each with why it is not running), and its recent lines.
pub fn node(
    base: &str,
    now: u64,
    node: &NodeView,
    why: &[(String, Value)],
    logs: &Value,
    note: &str,
    actions: bool,
) -> String {
    let mut body = String::new();
    let key = encode(&node.key);
    if !note.is_empty() {
        body.push_str(&format!(
            "<p class=\"note\" id=\"note\">{}</p>\n",
            text(note, LONG)
        ));
    }
    if let Err(error) = &node.metrics {
        body.push_str(&format!(
            "<p class=\"bad\">unreachable: {}</p>\n",
            text(error, LONG)
        ));
        return layout(base, &text(&node.key, SHORT), &body, Some(REFRESH_S));
    }
    body.push_str(&format!(
        "<p class=\"facts\">version {} · up {} · {} service(s), {} failing</p>\n",
        version(node),
        uptime(now, node),
        node.services().len(),
        node.failing(),
    ));
    let mut services: Vec<&Value> = node.services().iter().collect();
    services.sort_by_key(|s| !failing(s));
    body.push_str("<h2>Services</h2>\n<table id=\"services\"><thead><tr><th>service</th><th>state</th><th>ready</th><th>restarts</th><th>last exit</th><th>cpu</th><th>memory</th><th>actions</th></tr></thead><tbody>\n");
    for service in services {
        let name = service.get("name").and_then(Value::as_str).unwrap_or("");
        let mut buttons = format!(
            "<a href=\"{base}/node/{key}/follow/{}\">follow</a>",
            encode(name)
        );
        if actions {
            for action in [Action::Restart, Action::Stop, Action::Start] {
                buttons.push_str(&format!(
                    " <form method=\"get\" action=\"{base}/node/{key}/{}/{}\"><button type=\"submit\" name=\"ask\" value=\"1\">{}</button></form>",
                    action.word(),
                    encode(name),
                    action.word(),
                ));
            }
        }
        body.push_str(&format!(
            "<tr id=\"service-{}\"><td>{}</td>{}<td class=\"actions\">{buttons}</td></tr>\n",
            encode(name),
            text(name, SHORT),
            figures(service),
        ));
        if let Some((_, why)) = why.iter().find(|(n, _)| n == name) {
            body.push_str(&format!(
                "<tr class=\"why\"><td></td><td colspan=\"7\">{}</td></tr>\n",
                why_text(why)
            ));
        }
    }
    body.push_str("</tbody></table>\n<h2>Recent lines</h2>\n<pre id=\"logs\">");
    for line in logs
        .get("lines")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        body.push_str(&text(&rpc::display::log_line(line), LONG));
        body.push('\n');
    }
    body.push_str("</pre>\n");
    layout(base, &text(&node.hostname(), SHORT), &body, Some(REFRESH_S))
}

/// `service.why` in one cell: its sentence, then the last lines of the
/// link that holds everything back.
fn why_text(why: &Value) -> String {
    let mut out = field(why, "summary");
    let last = why
        .get("chain")
        .and_then(Value::as_array)
        .and_then(|chain| chain.last());
    if let Some(lines) = last
        .and_then(|link| link.get("lines"))
        .and_then(Value::as_array)
    {
        out.push_str("<pre>");
        for line in lines.iter().rev().take(5).rev() {
            let line = match line {
                Value::String(s) => s.clone(),
                other => rpc::display::log_line(other),
            };
            out.push_str(&text(&line, LONG));
            out.push('\n');
        }
        out.push_str("</pre>");
    }
    out
}

/// The page that asks before an action is taken: a form that posts it.
pub fn confirm(base: &str, key: &str, service: &str, action: Action) -> String {
    let body = format!(
        "<p>{} <b>{}</b> on <b>{}</b>?</p>\n<form method=\"post\" action=\"{base}/node/{}/{}/{}\"><button type=\"submit\" id=\"confirm\">yes, {} it</button></form> <a href=\"{base}/node/{}\">no, back</a>\n",
        action.word(),
        text(service, SHORT),
        text(key, SHORT),
        encode(key),
        action.word(),
        encode(service),
        action.word(),
        encode(key),
    );
    layout(
        base,
        &format!("{} {}?", action.word(), text(service, SHORT)),
        &body,
        None,
    )
}

/// The top of a followed service's page; its lines come after, as they come.
pub fn follow_top(base: &str, key: &str, service: &str) -> String {
    let title = format!("{} on {}", text(service, SHORT), text(key, SHORT));
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <link rel=\"stylesheet\" href=\"{base}/style.css\"></head><body><header><a class=\"home\" href=\"{base}/\">spore</a> \
         <a href=\"{base}/node/{}\">{}</a> <span>{} (following)</span></header><main><pre id=\"logs\">\n",
        encode(key),
        text(key, SHORT),
        text(service, SHORT),
    )
}

/// One followed line.
pub fn follow_line(line: &Value) -> String {
    let mut out = text(&rpc::display::log_line(line), LONG);
    out.push('\n');
    out
}

/// A page that says what went wrong.
pub fn problem(base: &str, message: &str) -> String {
    layout(
        base,
        "error",
        &format!("<p class=\"bad\">{}</p>\n", text(message, LONG)),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fleet() -> Vec<NodeView> {
        vec![
            NodeView {
                key: "node-01".into(),
                record: Some(json!({ "last_seen": 990, "registration": { "version": "0.1.0" } })),
                metrics: Ok(json!({
                    "hostname": "node-01", "version": "0.1.0", "build_id": "3f0c9a1b22", "start_time_s": 900,
                    "services": [
                        { "name": "web", "state": "running", "ready": true, "restarts": 0 },
                        { "name": "<b>bad</b>", "state": "backoff", "ready": false, "restarts": 4, "last_exit_code": 1, "memory_bytes": 2097152 },
                    ]
                })),
            },
            NodeView {
                key: "node-02".into(),
                record: None,
                metrics: Err("connection refused".into()),
            },
        ]
    }

    #[test]
    fn what_is_wrong_comes_first_and_outside_text_is_escaped() {
        let page = overview("/t", &fleet(), 1000, "");
        let trouble = page.find("id=\"trouble\"").unwrap();
        let nodes = page.find("id=\"nodes\"").unwrap();
        assert!(trouble < nodes);
        let table = &page[trouble..nodes];
        assert!(table.contains("connection refused"), "{table}");
        assert!(table.contains("&lt;b&gt;bad&lt;/b&gt;"), "{table}");
        assert!(!page.contains("<b>bad"), "{page}");
        // In the services table, the failing one is listed before web.
        let services = &page[page.find("id=\"services\"").unwrap()..];
        assert!(services.find("backoff").unwrap() < services.find(">web<").unwrap());
        assert!(page.contains("3f0c9a1b"), "{page}");
        assert!(page.contains("2.0 MiB"), "{page}");
        assert!(
            page.contains("10s ago") || page.contains("0m10s ago"),
            "{page}"
        );
    }

    #[test]
    fn a_healthy_fleet_says_so() {
        let nodes = vec![NodeView {
            key: "a".into(),
            record: None,
            metrics: Ok(json!({ "services": [{ "name": "web", "state": "running" }] })),
        }];
        assert!(overview("/t", &nodes, 0, "").contains("id=\"all-well\""));
    }

    #[test]
    fn names_survive_the_path() {
        for name in ["node-01", "[::1]:7001", "web sä/../x", "%zz"] {
            assert_eq!(decode(&encode(name)).as_deref(), Some(name));
        }
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("%ff"), None);
        assert!(encode("../x").starts_with(".."));
        assert!(!encode("a/b").contains('/'));
    }

    #[test]
    fn the_node_page_offers_actions_only_when_allowed() {
        let nodes = fleet();
        let why = [(
            "<b>bad</b>".to_owned(),
            json!({ "summary": "waits for db, which failed", "chain": [{ "lines": ["boom <x>"] }] }),
        )];
        let logs = json!({ "lines": [{ "service": "web", "text": "hello <script>", "stream": "stdout", "time": "t" }] });
        let page = node("/t", 1000, &nodes[0], &why, &logs, "", true);
        assert!(page.contains("/t/node/node-01/restart/web"), "{page}");
        assert!(page.contains("waits for db, which failed"), "{page}");
        assert!(page.contains("boom &lt;x&gt;"), "{page}");
        assert!(page.contains("hello &lt;script&gt;"), "{page}");
        assert!(!page.contains("<script"), "{page}");
        let read_only = node("/t", 1000, &nodes[0], &[], &logs, "", false);
        assert!(!read_only.contains("/restart/"), "{read_only}");
    }
}
