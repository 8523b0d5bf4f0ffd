//! `sporectl --all` / `--nodes`: one signed call per node the beacon lists,
//! concurrently, each pinned to the key the beacon published, and a table
//! (or JSON) of what each answered.

mod dashboard;
mod scrape;

pub(crate) use dashboard::{serve as serve_dashboard, Dashboard};
pub(crate) use scrape::{serve as serve_metrics, ServeMetrics};

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::*;

/// A node of a fleet command: its hostname, where to reach it, its pinned key.
type Target = (String, String, Pin);

/// Where to reach a node the beacon lists: its overlay address and RPC port.
fn node_address(record: &Value) -> Option<Target> {
    let registration = record.get("registration")?;
    let hostname = registration.get("hostname")?.as_str()?.to_owned();
    // A beacon that stored a name no node could register is not followed.
    rpc::hostname::check(&hostname).ok()?;
    let ip: std::net::IpAddr = registration
        .get("mycelium_address")?
        .as_str()?
        .parse()
        .ok()?;
    let port = registration.get("hero_proc_port")?.as_u64()?;
    let key = nodekey::parse_openssh_public(registration.get("hero_proc_auth_pubkey")?.as_str()?)?;
    Some((
        hostname,
        std::net::SocketAddr::new(ip, u16::try_from(port).ok()?).to_string(),
        Pin::Key(key),
    ))
}

/// One node's outcome in a fleet command. The answer is kept as compact
/// JSON text, not as a `Value` tree (several times its size): a fleet
/// command holds every node's answer until it prints them in order.
struct Outcome {
    hostname: String,
    result: Result<Box<str>, ClientError>,
    /// The call succeeded, and any service it waited for came up.
    ok: bool,
}

impl Outcome {
    /// `ok` as the node's answer would make `verb`'s exit status 0
    /// ([`verbs::Tally`]); for a `summary` (`--all status`), as long as no
    /// service of the node is in trouble.
    fn new(
        hostname: String,
        verb: Verb,
        summary: bool,
        result: Result<Value, ClientError>,
    ) -> Self {
        let ok = result.as_ref().is_ok_and(|answer| {
            if summary {
                return !rpc::display::node_row(answer).1;
            }
            let mut tally = verbs::Tally::new(verb);
            tally.answer(answer);
            tally.code() == 0
        });
        let result = result.map(|value| value.to_string().into_boxed_str());
        Self {
            hostname,
            result,
            ok,
        }
    }

    fn ok(&self) -> bool {
        self.ok
    }
}

/// Runs the command on the fleet; exit status 0 when every node's answer
/// made it 0, else 1.
pub(crate) async fn fleet(options: &Options) -> Result<u8, ClientError> {
    use std::io::IsTerminal;
    let verb = options.verb.unwrap_or(Verb::Discover);
    let summary = options.summary;
    let (targets, channel) = targets(options)?;
    if options.shape.follow {
        return follow_fleet(options, targets).await;
    }
    let beacon_channel = channel;
    let operand = operands(options).into_iter().next().unwrap_or_default();
    let table_method = verb.method(&operand);
    let method = table_method.name();
    if beacon_channel == Channel::Unauthenticated && table_method.changes_state() {
        return Err(ClientError::Declined(format!(
            "refusing {method} on nodes whose keys came over plain http from {} (--insecure-beacon): a node key from an unauthenticated beacon may be anyone's; use https or a loopback beacon",
            options.beacon.as_deref().unwrap_or_default()
        )));
    }
    if table_method.asks_first() {
        let names: Vec<&str> = targets.iter().map(|(h, _, _)| h.as_str()).take(5).collect();
        let more = targets.len().saturating_sub(names.len());
        confirm(
            &format!(
                "{method} on {} node(s): {}{}?",
                targets.len(),
                names.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
            options.yes,
        )?;
    }
    // Files and stdin are read once the command is confirmed.
    if verb == Verb::Deploy && !options.artifact_files.is_empty() {
        crate::ship::publish_for_fleet(options, &operand, &options.artifact_files)?;
    }
    let identities = Rc::new(identities(options)?);
    let (method, mut params) = request(options, verb, &operand)?;
    let total = targets.len();
    let progress = std::io::stderr().is_terminal();
    let outcomes = call_every(
        options,
        targets,
        &identities,
        (verb, summary),
        (method, &params),
        progress,
    )
    .await;
    // A secret.set's value: each node's copy was wiped once sent.
    proto::wipe::wipe_strings(&mut params);
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.ok())
        .map(|o| o.hostname.as_str())
        .collect();
    if summary {
        summary_table(options, &outcomes);
    } else if verb == Verb::Metrics && !options.json {
        for line in exposition(&outcomes).lines() {
            say!("{line}");
        }
    } else if options.json {
        // One row at a time, each answer spliced in as the text it is kept
        // as: the whole document never exists in memory at once.
        say!("[");
        for (i, o) in outcomes.iter().enumerate() {
            let comma = if i + 1 < outcomes.len() { "," } else { "" };
            let name = Value::String(o.hostname.clone());
            match &o.result {
                Ok(result) => say!(
                    "{{\"hostname\":{name},\"ok\":{},\"result\":{result}}}{comma}",
                    o.ok()
                ),
                Err(e) => say!(
                    "{}{comma}",
                    json!({ "hostname": o.hostname, "ok": false, "error": e.to_string(), "exit_code": e.exit_code() })
                ),
            }
        }
        say!("]");
    } else {
        let width = outcomes
            .iter()
            .map(|o| o.hostname.len())
            .max()
            .unwrap_or(0)
            .max(4);
        say!("{:<width$}  RESULT", "NODE");
        for o in &outcomes {
            let word = if o.ok() { "ok  " } else { "FAIL" };
            match &o.result {
                Ok(result) => {
                    let result: Value = serde_json::from_str(result).unwrap_or(Value::Null);
                    let lines = verbs::render(verb, &result);
                    match lines.as_slice() {
                        [one] => say!("{:<width$}  {word} {one}", o.hostname),
                        more => {
                            say!("{:<width$}  {word}", o.hostname);
                            for line in more {
                                say!("    {line}");
                            }
                        }
                    }
                }
                Err(e) => say!("{:<width$}  FAIL {e}", o.hostname),
            }
        }
    }
    if !failed.is_empty() {
        complain!(
            "sporectl: failed on {} of {total} node(s): {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(u8::from(!failed.is_empty()))
}

/// `--all status`: one row per node, the ones in trouble first (unreachable,
/// then a service failing), each group by name; `--failed` keeps only those.
fn summary_table(options: &Options, outcomes: &[Outcome]) {
    let mut rows: Vec<(u8, Vec<String>, Value)> = Vec::new();
    for o in outcomes {
        let (rank, row, json) = match &o.result {
            Ok(text) => {
                let info: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                let ([up, version, services], problem) = rpc::display::node_row(&info);
                let state = if problem { "FAILING" } else { "ok" };
                let json = json!({ "hostname": o.hostname, "ok": !problem, "uptime_s": info.get("uptime_s"),
                    "version": info.get("version"), "services": info.get("services") });
                (
                    if problem { 1 } else { 2 },
                    vec![o.hostname.clone(), state.to_owned(), up, version, services],
                    json,
                )
            }
            Err(e) => {
                let error = rpc::display::printable(&e.to_string());
                let json = json!({ "hostname": o.hostname, "ok": false, "error": e.to_string(), "exit_code": e.exit_code() });
                (
                    0,
                    vec![
                        o.hostname.clone(),
                        "UNREACHABLE".to_owned(),
                        String::new(),
                        String::new(),
                        error,
                    ],
                    json,
                )
            }
        };
        if options.failed_only && rank == 2 {
            continue;
        }
        rows.push((rank, row, json));
    }
    // Stable: within a rank, the outcomes' order (by name).
    rows.sort_by_key(|(rank, _, _)| *rank);
    if options.json {
        say!(
            "{}",
            Value::Array(rows.into_iter().map(|(_, _, j)| j).collect())
        );
        return;
    }
    if rows.is_empty() {
        say!("every node is up and no service failed, in backoff or unhealthy");
        return;
    }
    let mut table = vec![["NODE", "STATE", "UP", "VERSION", "SERVICES"]
        .map(str::to_owned)
        .to_vec()];
    table.extend(rows.into_iter().map(|(_, row, _)| row));
    for line in rpc::display::fit(rpc::display::table(&table), rpc::display::terminal_width()) {
        say!("{line}");
    }
}

/// The nodes a fleet command goes to: every node the beacon lists (or those
/// `--nodes` names), each at its overlay address (or its `--address`),
/// pinned to the key the beacon published; and how the beacon was read.
pub(crate) fn targets(options: &Options) -> Result<(Vec<Target>, Channel), ClientError> {
    let (listed, channel) = listed(options)?;
    Ok((
        listed.into_iter().map(|(target, _)| target).collect(),
        channel,
    ))
}

/// [`targets`], each with the beacon's record of it (when it was last
/// heard from, what it registered).
pub(crate) fn listed(options: &Options) -> Result<(Vec<(Target, Value)>, Channel), ClientError> {
    let beacon = beacon_commands::client(options)?;
    let records = beacon.nodes()?;
    let mut targets: Vec<(Target, Value)> = records
        .into_iter()
        .filter(|record| labelled(record, &options.labels))
        .filter_map(|record| Some((node_address(&record)?, record)))
        .collect();
    for (name, address) in &options.addresses {
        let target = targets.iter_mut().find(|((h, _, _), _)| h == name);
        let Some(((_, reach, _), _)) = target else {
            return Err(ClientError::Unknown(format!(
                "--address {name}=…: the beacon knows no node {name}"
            )));
        };
        *reach = address.clone();
    }
    if let Some(only) = &options.only {
        for wanted in only {
            if !targets.iter().any(|((h, _, _), _)| matches_name(wanted, h)) {
                let labels = if options.labels.is_empty() {
                    String::new()
                } else {
                    " with those labels".to_owned()
                };
                return Err(ClientError::Unknown(format!(
                    "the beacon knows no node {}{labels}",
                    rpc::display::printable(wanted)
                )));
            }
        }
        targets.retain(|((h, _, _), _)| only.iter().any(|wanted| matches_name(wanted, h)));
    }
    Ok((targets, beacon.channel))
}

/// Whether `hostname` is `pattern`, where each `*` in the pattern stands
/// for any run of characters (`rack3-*`, `*-edge`).
fn matches_name(pattern: &str, hostname: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = hostname.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Whether a beacon record's registration carries every label asked for.
fn labelled(record: &Value, wanted: &[(String, String)]) -> bool {
    let labels = record.pointer("/registration/labels");
    wanted.iter().all(|(key, value)| {
        labels.and_then(|l| l.get(key)).and_then(Value::as_str) == Some(value.as_str())
    })
}

/// `--all logs -f NAME`: every node's lines of NAME as they come, each
/// with the node's name in front (as stern and kubectl logs -l -f show a
/// fleet's); a node that cannot be reached or ends its follow is said on
/// stderr and the others go on.
async fn follow_fleet(options: &Options, targets: Vec<Target>) -> Result<u8, ClientError> {
    use std::rc::Rc;
    let identities = Rc::new(identities(options)?);
    let operand = operands(options).into_iter().next().unwrap_or_default();
    let (method, params) = request(options, Verb::Logs, &operand)?;
    let width = targets.iter().map(|(h, _, _)| h.len()).max().unwrap_or(0);
    let failures = Rc::new(std::cell::Cell::new(0usize));
    let executor = smol::LocalExecutor::new();
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|(hostname, address, pin)| {
            let identities = identities.clone();
            let params = params.clone();
            let failures = failures.clone();
            let (json, timeout, limit) = (
                options.json,
                options.connect_timeout,
                call_limit(options, method),
            );
            executor.spawn(async move {
                let shown = |line: &Value| {
                    if json {
                        let mut line = line.clone();
                        if let Value::Object(map) = &mut line {
                            map.insert("node".into(), Value::String(hostname.clone()));
                        }
                        say!("{line}");
                    } else {
                        say!("{:<width$} {}", hostname, log_line(line));
                    }
                };
                let followed = async {
                    let mut session =
                        connect_with_any(&address, &identities, &pin, timeout).await?;
                    let backlog = call_within(&mut session, method, params, limit).await?;
                    for line in backlog
                        .get("lines")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        shown(line);
                    }
                    loop {
                        let note = session.notification().await?;
                        if note.get("method").and_then(Value::as_str) == Some("service.log.end") {
                            return Ok::<(), ClientError>(());
                        }
                        shown(&note.get("params").cloned().unwrap_or(Value::Null));
                    }
                }
                .await;
                if let Err(error) = followed {
                    failures.set(failures.get() + 1);
                    complain!("sporectl: {hostname}: {error}");
                }
            })
        })
        .collect();
    executor
        .run(async {
            for task in tasks {
                task.await;
            }
        })
        .await;
    Ok(u8::from(failures.get() > 0))
}

/// Every node's `node.metrics` (what `metrics --serve` and the dashboard
/// show), by hostname.
async fn metrics_of(
    options: &Options,
    targets: Vec<Target>,
    identities: &Rc<Vec<Identity>>,
) -> Vec<Outcome> {
    let method = proto::method::Method::NodeMetrics.name();
    call_every(
        options,
        targets,
        identities,
        (Verb::Metrics, false),
        (method, &json!({})),
        false,
    )
    .await
}

/// Makes one call (`method` with `params`, as `verb` reads its answers) on
/// every node of `targets`, `--concurrency` at a time; the outcomes sorted
/// by hostname. With `progress`, a count redrawn on stderr. Each node's copy
/// of `params` is wiped once sent (it may carry a secret).
async fn call_every(
    options: &Options,
    targets: Vec<Target>,
    identities: &Rc<Vec<Identity>>,
    (verb, summary): (Verb, bool),
    (method, params): (&str, &Value),
    progress: bool,
) -> Vec<Outcome> {
    let connect_timeout = options.connect_timeout;
    let limit = call_limit(options, method);
    let total = targets.len();
    let queue = Rc::new(RefCell::new(targets.into_iter().collect::<VecDeque<_>>()));
    let outcomes = Rc::new(RefCell::new(Vec::with_capacity(total)));
    let started = std::time::Instant::now();
    let executor = smol::LocalExecutor::new();
    let workers: Vec<_> = (0..options.concurrency.min(total.max(1)))
        .map(|_| {
            let queue = queue.clone();
            let outcomes = outcomes.clone();
            let identities = identities.clone();
            let mut params = params.clone();
            executor.spawn(async move {
                loop {
                    let job = queue.borrow_mut().pop_front();
                    let Some((hostname, address, pin)) = job else {
                        break;
                    };
                    let result = async {
                        let mut session =
                            connect_with_any(&address, &identities, &pin, connect_timeout).await?;
                        call_within(&mut session, method, params.clone(), limit).await
                    }
                    .await;
                    outcomes
                        .borrow_mut()
                        .push(Outcome::new(hostname, verb, summary, result));
                    if progress {
                        let outcomes = outcomes.borrow();
                        let done = outcomes.len();
                        let failed = outcomes.iter().filter(|o| !o.ok()).count();
                        let elapsed = started.elapsed().as_secs_f64();
                        let left = elapsed / done.max(1) as f64 * (total - done) as f64;
                        eprint!(
                            "\r{done}/{total} nodes done, {failed} failed, about {left:.0} s left  "
                        );
                    }
                }
                proto::wipe::wipe_strings(&mut params);
            })
        })
        .collect();
    executor
        .run(async {
            for worker in workers {
                worker.await;
            }
        })
        .await;
    if progress {
        eprintln!();
    }
    let mut outcomes = Rc::try_unwrap(outcomes)
        .map(RefCell::into_inner)
        .unwrap_or_default();
    outcomes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    outcomes
}

/// One exposition for the whole fleet, each node's figures under its name;
/// a node that did not answer is spore_node_up 0.
fn exposition(outcomes: &[Outcome]) -> String {
    let answers: Vec<Option<Value>> = outcomes
        .iter()
        .map(|o| {
            o.result
                .as_ref()
                .ok()
                .and_then(|text| serde_json::from_str(text).ok())
        })
        .collect();
    let scraped: Vec<rpc::metrics::Scraped<'_>> = outcomes
        .iter()
        .zip(&answers)
        .map(|(o, answer)| rpc::metrics::Scraped {
            node: &o.hostname,
            figures: answer.as_ref(),
        })
        .collect();
    rpc::metrics::render(&scraped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_patterns_match_as_a_shell_glob_of_stars_does() {
        assert!(matches_name("node-01", "node-01"));
        assert!(!matches_name("node-01", "node-011"));
        assert!(matches_name("rack3-*", "rack3-a"));
        assert!(matches_name("rack3-*", "rack3-"));
        assert!(!matches_name("rack3-*", "rack4-a"));
        assert!(matches_name("*-edge", "paris-edge"));
        assert!(!matches_name("*-edge", "paris-edge2"));
        assert!(matches_name("r*-n*-x", "rack3-node7-x"));
        assert!(!matches_name("r*-n*-x", "rack3-x"));
        assert!(matches_name("*", "anything"));
        assert!(!matches_name("a*a", "a"));
    }

    #[test]
    fn a_node_is_selected_only_when_it_carries_every_label() {
        let record =
            serde_json::json!({ "registration": { "labels": { "rack": "3", "role": "edge" } } });
        let wanted = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(labelled(&record, &[]));
        assert!(labelled(&record, &wanted(&[("rack", "3")])));
        assert!(labelled(
            &record,
            &wanted(&[("rack", "3"), ("role", "edge")])
        ));
        assert!(!labelled(&record, &wanted(&[("rack", "4")])));
        assert!(!labelled(
            &serde_json::json!({ "registration": {} }),
            &wanted(&[("rack", "3")])
        ));
    }
}
