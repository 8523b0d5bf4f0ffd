//! The dashboard's side toward the nodes: the fleet's figures gathered
//! (and kept a moment for the next page), one node's page, an action on a
//! service, a service's lines followed.

use std::rc::Rc;
use std::time::Instant;

use smol::future::FutureExt;
use smol::io::AsyncReadExt;
use smol::net::TcpStream;

use super::*;

impl Board<'_> {
    /// The nodes, each with where to reach it and its beacon record.
    pub(super) fn targets(&self) -> Result<Vec<(Target, Option<Value>)>, ClientError> {
        match &self.source {
            Source::One(target) => Ok(vec![((**target).clone(), None)]),
            Source::Beacon => Ok(listed(self.options)?
                .0
                .into_iter()
                .map(|(target, record)| (target, Some(record)))
                .collect()),
        }
    }

    /// Every node with its figures: the last gathering when it is young
    /// enough, else a new one (one at a time).
    pub(super) async fn fleet(&self) -> Rc<Vec<NodeView>> {
        let _gathering = self.gathering.lock().await;
        let fresh = self
            .last
            .borrow()
            .as_ref()
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(_, nodes)| nodes.clone());
        if let Some(nodes) = fresh {
            return nodes;
        }
        let began = Instant::now();
        let nodes = Rc::new(self.gather().await);
        *self.last.borrow_mut() = Some((began, nodes.clone()));
        nodes
    }

    pub(super) async fn gather(&self) -> Vec<NodeView> {
        let listed = match self.targets() {
            Ok(listed) => listed,
            Err(error) => {
                return vec![NodeView {
                    key: "beacon".to_owned(),
                    record: None,
                    metrics: Err(format!("the beacon could not be read: {error}")),
                }]
            }
        };
        let targets: Vec<Target> = listed.iter().map(|(t, _)| t.clone()).collect();
        let outcomes = metrics_of(self.options, targets, &self.identities).await;
        let mut nodes: Vec<NodeView> = outcomes
            .into_iter()
            .map(|outcome| {
                let record = listed
                    .iter()
                    .find(|((h, _, _), _)| *h == outcome.hostname)
                    .and_then(|(_, record)| record.clone());
                NodeView {
                    metrics: match outcome.result {
                        Ok(text) => serde_json::from_str(&text).map_err(|e| e.to_string()),
                        Err(error) => Err(error.to_string()),
                    },
                    key: outcome.hostname,
                    record,
                }
            })
            .collect();
        // Unreachable first, then those with a failing service, each by name.
        nodes.sort_by_key(|n| match &n.metrics {
            Err(_) => 0,
            Ok(_) if n.services_failing() => 1,
            Ok(_) => 2,
        });
        nodes
    }

    /// A signed session with the node `key`.
    pub(super) async fn session(
        &self,
        key: &str,
    ) -> Result<(Target, Option<Value>, Session), ClientError> {
        let listed = self.targets()?;
        let Some(((name, address, pin), record)) =
            listed.into_iter().find(|((h, _, _), _)| h == key)
        else {
            return Err(ClientError::Unknown(format!(
                "no node {}",
                rpc::display::printable(key)
            )));
        };
        let session = connect_with_any(
            &address,
            &self.identities,
            &pin,
            self.options.connect_timeout,
        )
        .await?;
        Ok(((name, address, pin), record, session))
    }

    /// One call on `session`, within the command's time limits.
    pub(super) async fn call(
        &self,
        session: &mut Session,
        method: proto::method::Method,
        params: Value,
    ) -> Result<Value, ClientError> {
        let name = method.name();
        call_within(session, name, params, call_limit(self.options, name)).await
    }

    /// A node's page: its figures, why each failing service is not
    /// running, and its recent lines, over one session.
    pub(super) async fn node_page(&self, key: &str, note: &str) -> String {
        use proto::method::Method;
        let (record, mut session) = match self.session(key).await {
            Ok((_, record, session)) => (record, session),
            Err(error) => {
                let node = NodeView {
                    key: key.to_owned(),
                    record: None,
                    metrics: Err(error.to_string()),
                };
                return page::node(
                    &self.base,
                    proto::rpc::unix_time(),
                    &node,
                    &[],
                    &Value::Null,
                    note,
                    false,
                );
            }
        };
        let metrics = self
            .call(&mut session, Method::NodeMetrics, json!({}))
            .await;
        let node = NodeView {
            key: key.to_owned(),
            record,
            metrics: metrics.map_err(|e| e.to_string()),
        };
        let failing: Vec<String> = node.failing_names().into_iter().take(MAX_WHY).collect();
        let mut why = Vec::new();
        for name in failing {
            if let Ok(answer) = self
                .call(&mut session, Method::ServiceWhy, json!({ "name": name }))
                .await
            {
                why.push((name, answer));
            }
        }
        let logs = self
            .call(
                &mut session,
                Method::NodeLogs,
                json!({ "lines": RECENT_LINES }),
            )
            .await
            .unwrap_or(Value::Null);
        page::node(
            &self.base,
            proto::rpc::unix_time(),
            &node,
            &why,
            &logs,
            note,
            self.actions_allowed(),
        )
    }

    /// Does `action` to `service` on node `key`; what came of it, in words.
    pub(super) async fn act(&self, key: &str, action: Action, service: &str) -> String {
        let verb = match action {
            Action::Start => Verb::Start,
            Action::Stop => Verb::Stop,
            Action::Restart => Verb::Restart,
        };
        let shape = verbs::Shape {
            wait: Some(ACTION_WAIT),
            ..Default::default()
        };
        let done = async {
            let (method, params) = verbs::request(verb, service, &shape, None)
                .map_err(|e| ClientError::Local(e.to_string()))?;
            let (_, _, mut session) = self.session(key).await?;
            self.call(&mut session, method, params).await
        }
        .await;
        // What was done is in the operator's terminal too, as sporectl
        // says what it does.
        let said = match &done {
            Ok(answer) => format!(
                "{} {service} on {key}: {}",
                action.word(),
                verbs::render(verb, answer).join("; ")
            ),
            Err(error) => format!("{} {service} on {key} failed: {error}", action.word()),
        };
        complain!("sporectl: dashboard: {said}");
        // The pages ask anew after a change.
        *self.last.borrow_mut() = None;
        said
    }

    /// A service's lines as they come: the backlog, then each new line,
    /// until the service's follow ends or the browser goes away.
    pub(super) async fn follow(&self, stream: &mut TcpStream, key: &str, service: &str) {
        let followed = async {
            let (_, _, mut session) = self.session(key).await?;
            let shape = verbs::Shape {
                lines: RECENT_LINES,
                follow: true,
                ..Default::default()
            };
            let (method, params) = verbs::request(Verb::Logs, service, &shape, None)
                .map_err(|e| ClientError::Local(e.to_string()))?;
            let backlog = self.call(&mut session, method, params).await?;
            Ok::<_, ClientError>((session, backlog))
        }
        .await;
        let (mut session, backlog) = match followed {
            Ok(followed) => followed,
            Err(error) => {
                return self
                    .page(
                        stream,
                        "502 Bad Gateway",
                        &page::problem(&self.base, &error.to_string()),
                    )
                    .await
            }
        };
        // No length: the answer grows until either side ends it.
        let mut head =
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nConnection: close\r\n"
                .to_owned();
        for header in PAGE_HEADERS {
            head.push_str(header);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head.push_str(&page::follow_top(&self.base, key, service));
        for line in backlog
            .get("lines")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            head.push_str(&page::follow_line(line));
        }
        if web::write(stream, head.as_bytes()).await.is_err() {
            return;
        }
        // The browser sends nothing more: a read that ends means it left.
        let mut watch = stream.clone();
        loop {
            let next = async { Some(session.notification().await) }
                .or(async {
                    gone(&mut watch).await;
                    None
                })
                .await;
            let Some(Ok(note)) = next else {
                return;
            };
            if note.get("method").and_then(Value::as_str) == Some("service.log.end") {
                let _ = web::write(
                    stream,
                    b"</pre><p>(the service's output ended)</p></main></body></html>\n",
                )
                .await;
                return;
            }
            let line = page::follow_line(&note.get("params").cloned().unwrap_or(Value::Null));
            if web::write(stream, line.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// Returns once the peer has closed its side (or the connection failed);
/// anything it sends meanwhile is read and dropped.
pub(super) async fn gone(stream: &mut TcpStream) {
    let mut chunk = [0u8; 512];
    while let Ok(1..) = stream.read(&mut chunk).await {}
}

impl NodeView {
    /// Whether any of its services is in trouble.
    pub(super) fn services_failing(&self) -> bool {
        !self.failing_names().is_empty()
    }

    /// The names of its services in trouble.
    pub(super) fn failing_names(&self) -> Vec<String> {
        self.metrics
            .as_ref()
            .ok()
            .and_then(|m| m.get("services"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|s| page::failing(s))
            .filter_map(|s| s.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }
}
