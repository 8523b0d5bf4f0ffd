//! `sporectl --all metrics --serve ADDRESS`: the fleet as one Prometheus
//! scrape target. `GET /metrics` answers the fleet's exposition (every
//! node's figures under its name, a node that did not answer as
//! `spore_node_up 0`), scraped anew only when the last one is older than
//! `--min-interval`: scrapers that ask more often, or many at once, share
//! one round of calls, so the nodes see at most one per interval.
//!
//! The listener is [`crate::web`]'s, bounded as every sporectl listener
//! is.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::net::TcpStream;

use super::*;
use crate::web::{self, Request, Server, Site};

/// `metrics --serve`'s settings.
#[derive(Debug, Clone)]
pub(crate) struct ServeMetrics {
    /// Where to listen (`127.0.0.1:9464`).
    pub(crate) listen: String,
    /// The youngest exposition handed out again rather than scraped anew.
    pub(crate) min_interval: Duration,
}

/// Serves until killed; Err when it cannot listen or has no key to call with.
pub(crate) fn serve(options: &Options, settings: &ServeMetrics) -> Result<u8, ClientError> {
    let identities = Rc::new(identities(options)?);
    smol::block_on(async {
        let server = Server::bind(settings.listen.as_str(), "metrics")
            .await
            .map_err(|e| ClientError::Local(format!("--serve {}: {e}", settings.listen)))?;
        let local = server
            .local_addr()
            .map_err(|e| ClientError::Local(e.to_string()))?;
        complain!("sporectl: serving the fleet's metrics on http://{local}/metrics");
        let shared = Shared {
            options,
            settings,
            identities,
            last: RefCell::new(None),
            scraping: smol::lock::Mutex::new(()),
        };
        server.run(&shared).await;
        Ok(0)
    })
}

/// What every connection of the server shares.
struct Shared<'a> {
    options: &'a Options,
    settings: &'a ServeMetrics,
    identities: Rc<Vec<Identity>>,
    /// The last exposition, and when its scrape began.
    last: RefCell<Option<(Instant, Rc<str>)>>,
    /// One scrape at a time: requests that come meanwhile wait and share it.
    scraping: smol::lock::Mutex<()>,
}

impl Site for Shared<'_> {
    async fn answer(&self, request: Request, stream: &mut TcpStream) {
        let (status, body) = match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/metrics") => ("200 OK", self.exposition().await),
            ("GET", _) => (
                "404 Not Found",
                Rc::from("not found: the figures are at /metrics\n"),
            ),
            _ => ("405 Method Not Allowed", Rc::from("only GET\n")),
        };
        web::respond(
            stream,
            status,
            "text/plain; version=0.0.4; charset=utf-8",
            &[],
            body.as_bytes(),
        )
        .await;
    }
}

impl Shared<'_> {
    /// The fleet's exposition: the last one when it is young enough, else
    /// a new scrape (one at a time; those who waited share it).
    async fn exposition(&self) -> Rc<str> {
        let _scraping = self.scraping.lock().await;
        let fresh = self
            .last
            .borrow()
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.settings.min_interval)
            .map(|(_, text)| text.clone());
        if let Some(text) = fresh {
            return text;
        }
        let began = Instant::now();
        let text: Rc<str> = Rc::from(self.scrape().await);
        *self.last.borrow_mut() = Some((began, text.clone()));
        text
    }

    /// Asks every node for its figures, and adds the beacon's own. The
    /// beacon's lists are read first (blocking reads, bounded by their
    /// timeouts); a beacon that cannot be read makes an exposition with
    /// `spore_beacon_up 0` and no nodes.
    async fn scrape(&self) -> String {
        let (listed, beacon) = match listed(self.options) {
            Ok((listed, _)) => {
                let figures = beacon_figures(self.options, &listed);
                (listed, figures)
            }
            Err(error) => {
                return format!(
                    "# the beacon could not be read: {}\n{}",
                    rpc::display::printable(&error.to_string()),
                    rpc::metrics::render_beacon(&rpc::metrics::BeaconFigures::default())
                )
            }
        };
        let targets = listed.into_iter().map(|(target, _)| target).collect();
        let mut text = exposition(&metrics_of(self.options, targets, &self.identities).await);
        text.push_str(&rpc::metrics::render_beacon(&beacon));
        text
    }
}

/// The beacon's figures: the nodes it listed with their last heartbeats,
/// and, when it answers them, its pending registrations and its cache.
fn beacon_figures(options: &Options, listed: &[(Target, Value)]) -> rpc::metrics::BeaconFigures {
    let heartbeats = listed
        .iter()
        .map(|((hostname, _, _), record)| {
            (
                hostname.clone(),
                record.get("last_seen").and_then(Value::as_u64).unwrap_or(0),
            )
        })
        .collect();
    let client = beacon_commands::client(options).ok();
    let pending = client
        .as_ref()
        .and_then(|beacon| beacon.pending().ok())
        .map(|records| records.len());
    let artifacts = client
        .as_ref()
        .and_then(|beacon| beacon.artifacts().ok())
        .map(|list| {
            let bytes = list
                .iter()
                .filter_map(|a| a.get("size").and_then(Value::as_u64))
                .sum();
            (list.len(), bytes)
        });
    rpc::metrics::BeaconFigures {
        up: true,
        heartbeats,
        pending,
        artifacts,
    }
}
