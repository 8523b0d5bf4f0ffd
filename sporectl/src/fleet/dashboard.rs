//! `sporectl dashboard`: the fleet as a web page, served by the operator's
//! own sporectl on loopback. It reads the beacon and calls the nodes with
//! the operator's keys, as every other sporectl command does: the nodes
//! get no new listener and the beacon no new power.
//!
//! - `/TOKEN/` what is wrong first (unreachable nodes, services failed,
//!   in backoff or unhealthy), then every node and every service;
//! - `/TOKEN/node/NODE` one node: its services with why a failing one is
//!   not running, actions, and its recent lines;
//! - `/TOKEN/node/NODE/follow/SERVICE` a service's lines as they come (the
//!   answer stays open and grows: no script needed);
//! - `/TOKEN/node/NODE/ACTION/SERVICE` asks first (GET), then does it
//!   (POST): restart, stop, start, signed as sporectl signs them.
//!
//! The token is 128 random bits in every path: another user of the
//! machine, or a page in the operator's browser, cannot use the dashboard
//! without it (403). Requests must name the listener itself as their Host
//! (no DNS rebinding), and a POST must come from the dashboard's own
//! pages (Origin). The pages have no script and load nothing but the
//! dashboard's own style sheet, which their Content-Security-Policy
//! enforces. The listener is [`crate::web`]'s, bounded per source and in
//! total.

mod nodes;
mod page;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::net::TcpStream;

use super::*;
use crate::web::{self, Request, Server, Site};
use page::{Action, NodeView};

/// How long a gathered fleet is shown again rather than asked anew: pages
/// that reload at once (several tabs) share one round of calls.
const FRESH: Duration = Duration::from_secs(2);
/// The most failing services of a node whose `service.why` is asked.
const MAX_WHY: usize = 8;
/// Lines of recent output on a node's page, and of backlog when following.
const RECENT_LINES: u64 = 50;
/// How long an action waits for the service to come up before answering.
const ACTION_WAIT: Duration = Duration::from_secs(30);

/// The headers of every page: nothing but the dashboard's own style sheet
/// may load, no script runs, forms post only to it, it is never framed,
/// cached, or named to another site.
const PAGE_HEADERS: [&str; 4] = [
    "Content-Security-Policy: default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options: nosniff",
    // Not no-referrer: under it a browser sends its form posts with
    // `Origin: null`, and the Origin check could not tell them apart.
    "Referrer-Policy: same-origin",
    "Cache-Control: no-store",
];

/// `dashboard`'s settings.
#[derive(Debug, Clone)]
pub(crate) struct Dashboard {
    /// Where to listen: a loopback address (`127.0.0.1:0` picks a port).
    pub(crate) listen: String,
}

/// Where the dashboard's nodes come from.
enum Source {
    /// The beacon's list (`--all`, `--nodes`, `--label`).
    Beacon,
    /// One node (`--node`), pinned when the dashboard started.
    One(Box<Target>),
}

/// Serves until killed; Err when it cannot listen, the address is not
/// loopback, or there is no key to call with.
pub(crate) fn serve(options: &Options, settings: &Dashboard) -> Result<u8, ClientError> {
    let identities = Rc::new(identities(options)?);
    smol::block_on(async {
        let source = if options.all || options.only.is_some() || !options.labels.is_empty() {
            Source::Beacon
        } else {
            let (pin, record) = pin(options).await?;
            if record {
                // Pinned on first use: the key is read now, once.
                let session =
                    connect_with_any(&options.node, &identities, &pin, options.connect_timeout)
                        .await?;
                pins::remember(&options.known_nodes, &options.node, &session.node_key)
                    .map_err(|e| ClientError::Local(format!("cannot record the node key: {e}")))?;
                let key = Pin::Key(session.node_key);
                Source::One(Box::new((options.node.clone(), options.node.clone(), key)))
            } else {
                Source::One(Box::new((options.node.clone(), options.node.clone(), pin)))
            }
        };
        let server = Server::bind(settings.listen.as_str(), "dashboard")
            .await
            .map_err(|e| ClientError::Local(format!("--listen {}: {e}", settings.listen)))?;
        let local = server
            .local_addr()
            .map_err(|e| ClientError::Local(e.to_string()))?;
        if !local.ip().is_loopback() {
            return Err(ClientError::Local(format!(
                "--listen {}: the dashboard serves loopback only (127.0.0.1, [::1]); reach it from elsewhere through an SSH tunnel",
                settings.listen
            )));
        }
        let token = token()?;
        // The URL on stdout (a script reads it), the rest on stderr.
        say!("http://{local}/{token}/");
        complain!("sporectl: serving the dashboard on http://{local}/{token}/ (the token in the URL is its password)");
        let site = Board {
            options,
            identities,
            source,
            base: format!("/{token}"),
            port: local.port(),
            last: RefCell::new(None),
            gathering: smol::lock::Mutex::new(()),
        };
        server.run(&site).await;
        Ok(0)
    })
}

/// 128 random bits as hex.
fn token() -> Result<String, ClientError> {
    use ssh_key::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| ClientError::Local(format!("no randomness for the dashboard's token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The dashboard: what every request shares.
struct Board<'a> {
    options: &'a Options,
    identities: Rc<Vec<Identity>>,
    source: Source,
    /// `/TOKEN`: every page's path starts with it.
    base: String,
    /// The port it listens on, for the Host check.
    port: u16,
    /// The last fleet gathered, and when.
    last: RefCell<Option<(Instant, Rc<Vec<NodeView>>)>>,
    /// One gathering at a time: pages asked meanwhile share it.
    gathering: smol::lock::Mutex<()>,
}

/// What a request's path asks for, below the token.
enum Route {
    Overview,
    Style,
    Node(String),
    Follow(String, String),
    Act(String, Action, String),
}

impl Route {
    /// The route of `path` (already past the token); None when it names
    /// nothing.
    fn of(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            [] | [""] => Some(Self::Overview),
            ["style.css"] => Some(Self::Style),
            ["node", key] => Some(Self::Node(page::decode(key)?)),
            ["node", key, "follow", service] => {
                Some(Self::Follow(page::decode(key)?, page::decode(service)?))
            }
            ["node", key, action, service] => Some(Self::Act(
                page::decode(key)?,
                Action::from_word(action)?,
                page::decode(service)?,
            )),
            _ => None,
        }
    }
}

/// Whether two strings are equal, in time that does not depend on where
/// they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Site for Board<'_> {
    async fn answer(&self, request: Request, stream: &mut TcpStream) {
        // The token first: without it, nothing is said.
        let rest = request
            .path
            .get(..self.base.len())
            .filter(|prefix| same(prefix.as_bytes(), self.base.as_bytes()))
            .and_then(|_| request.path.get(self.base.len()..))
            .and_then(|rest| rest.strip_prefix('/'));
        let Some(rest) = rest else {
            return self.refuse(stream, "403 Forbidden", "forbidden\n").await;
        };
        if !self.own_host(&request) {
            return self
                .refuse(
                    stream,
                    "403 Forbidden",
                    "the Host is not this dashboard's\n",
                )
                .await;
        }
        let Some(route) = Route::of(rest) else {
            return self
                .page(
                    stream,
                    "404 Not Found",
                    &page::problem(&self.base, "no such page"),
                )
                .await;
        };
        match (request.method.as_str(), route) {
            ("GET", Route::Style) => {
                web::respond(
                    stream,
                    "200 OK",
                    "text/css; charset=utf-8",
                    &headers(),
                    page::STYLE.as_bytes(),
                )
                .await;
            }
            ("GET", Route::Overview) => {
                let nodes = self.fleet().await;
                let note = query_value(&request.query, "note").unwrap_or_default();
                let html = page::overview(&self.base, &nodes, proto::rpc::unix_time(), &note);
                self.page(stream, "200 OK", &html).await;
            }
            ("GET", Route::Node(key)) => {
                let note = query_value(&request.query, "note").unwrap_or_default();
                let html = self.node_page(&key, &note).await;
                self.page(stream, "200 OK", &html).await;
            }
            ("GET", Route::Follow(key, service)) => self.follow(stream, &key, &service).await,
            ("GET", Route::Act(key, action, service)) => {
                if !self.actions_allowed() {
                    return self.changes_refused(stream).await;
                }
                let html = page::confirm(&self.base, &key, &service, action);
                self.page(stream, "200 OK", &html).await;
            }
            ("POST", Route::Act(key, action, service)) => {
                if !self.same_origin(&request) {
                    return self
                        .refuse(
                            stream,
                            "403 Forbidden",
                            "a change must come from the dashboard's own page\n",
                        )
                        .await;
                }
                if !self.actions_allowed() {
                    return self.changes_refused(stream).await;
                }
                let note = self.act(&key, action, &service).await;
                let location = format!(
                    "Location: {}/node/{}?note={}",
                    self.base,
                    page::encode(&key),
                    page::encode(&note)
                );
                let mut headers = headers();
                headers.push(location);
                web::respond(
                    stream,
                    "303 See Other",
                    "text/plain; charset=utf-8",
                    &headers,
                    b"done\n",
                )
                .await;
            }
            _ => {
                self.refuse(stream, "405 Method Not Allowed", "not here\n")
                    .await;
            }
        }
    }
}

/// The headers of every page, as lines.
fn headers() -> Vec<String> {
    PAGE_HEADERS.iter().map(|h| (*h).to_owned()).collect()
}

/// The value of `name` in a query string, decoded.
fn query_value(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| page::decode(&value.replace('+', " ")))
}

impl Board<'_> {
    async fn page(&self, stream: &mut TcpStream, status: &str, html: &str) {
        web::respond(
            stream,
            status,
            "text/html; charset=utf-8",
            &headers(),
            html.as_bytes(),
        )
        .await;
    }

    async fn refuse(&self, stream: &mut TcpStream, status: &str, text: &str) {
        web::respond(
            stream,
            status,
            "text/plain; charset=utf-8",
            &headers(),
            text.as_bytes(),
        )
        .await;
    }

    /// Whether the request names this listener as its Host: a loopback
    /// name with our port (a page elsewhere that rebinds its name to
    /// 127.0.0.1 sends its own name).
    fn own_host(&self, request: &Request) -> bool {
        let Some(host) = request.header("host") else {
            return false;
        };
        let Some((name, port)) = host.rsplit_once(':') else {
            return false;
        };
        port == self.port.to_string() && matches!(name, "127.0.0.1" | "localhost" | "[::1]")
    }

    /// Whether a change request came from our own pages: its Origin, when
    /// it has one, is this listener, and its Sec-Fetch-Site, when it has
    /// one, is same-origin.
    fn same_origin(&self, request: &Request) -> bool {
        let origin_ok = match request.header("origin") {
            None => true,
            Some(origin) => origin
                .strip_prefix("http://")
                .is_some_and(|host| Some(host.to_owned()) == request.header("host")),
        };
        let site_ok = request
            .header("sec-fetch-site")
            .is_none_or(|site| site == "same-origin");
        origin_ok && site_ok
    }

    /// Says that changes are refused: the node keys came over plain http.
    async fn changes_refused(&self, stream: &mut TcpStream) {
        let why = format!(
            "changes are refused: the node keys came over plain http from {} (--insecure-beacon), and may be anyone's",
            self.options.beacon.as_deref().unwrap_or_default()
        );
        self.page(stream, "403 Forbidden", &page::problem(&self.base, &why))
            .await;
    }

    /// Whether the node keys can be trusted with a change.
    fn actions_allowed(&self) -> bool {
        match &self.source {
            Source::One(_) => true,
            Source::Beacon => !self.options.insecure_beacon,
        }
    }
}
