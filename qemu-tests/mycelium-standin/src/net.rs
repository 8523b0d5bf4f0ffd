//! The data plane at work: one thread reads the TUN, one per peer link
//! reads its frames; each packet goes where [`Overlay`] says. A link
//! announces its table when it comes up and whenever the table changes
//! (no timers: TCP carries every announcement, and a link that dies takes
//! its routes with it).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::link::{self, Frame};
use crate::overlay::{LinkId, Overlay, Verdict};
use crate::peer_stats::Peers;

/// A link whose peer stops reading for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// One link's sending side.
struct Sender {
    address: SocketAddr,
    stream: Mutex<TcpStream>,
}

/// The node's overlay: routes, links, the TUN and the peers' counters.
pub struct Net {
    overlay: Mutex<Overlay>,
    links: Mutex<BTreeMap<LinkId, Arc<Sender>>>,
    next: AtomicU64,
    tun: Option<File>,
    /// The peers' states and byte counters (the admin API shows them).
    pub peers: Arc<Mutex<Peers>>,
}

impl Net {
    /// The overlay of a node at `overlay`'s address, writing what is for
    /// it to `tun` (none with `--no-tun`).
    pub fn new(overlay: Overlay, tun: Option<File>) -> Arc<Net> {
        Arc::new(Net {
            overlay: Mutex::new(overlay),
            links: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(1),
            tun,
            peers: Arc::new(Mutex::new(Peers::default())),
        })
    }

    fn send(&self, link: LinkId, bytes: &[u8]) {
        let sender = match self.links.lock() {
            Ok(links) => links.get(&link).cloned(),
            Err(_) => None,
        };
        let Some(sender) = sender else { return };
        let Ok(mut stream) = sender.stream.lock() else {
            return;
        };
        if stream.write_all(bytes).is_err() {
            // The reader sees the end and takes the link down.
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        drop(stream);
        if let Ok(mut peers) = self.peers.lock() {
            peers.sent(sender.address, bytes.len() as u64);
        }
    }

    fn announce(&self, only: Option<LinkId>) {
        let frames: Vec<(LinkId, Vec<u8>)> = match self.overlay.lock() {
            Ok(overlay) => overlay
                .links()
                .into_iter()
                .filter(|link| only.is_none_or(|only| only == *link))
                .map(|link| (link, link::routes(&overlay.announcement_for(link))))
                .collect(),
            Err(_) => return,
        };
        for (link, frame) in frames {
            self.send(link, &frame);
        }
    }

    fn act(&self, verdict: Verdict) {
        match verdict {
            Verdict::Link(link, packet) => {
                if let Some(frame) = link::data(&packet) {
                    self.send(link, &frame);
                }
            }
            Verdict::Tun(packet) => {
                if let Some(mut tun) = self.tun.as_ref() {
                    let _ = tun.write(&packet);
                }
            }
            Verdict::Drop => {}
        }
    }

    /// Carries one peer connection until it ends: announces this node's
    /// table, then takes the peer's announcements and packets.
    pub fn run_link(&self, address: SocketAddr, stream: TcpStream) {
        let Ok(writer) = stream.try_clone() else {
            return;
        };
        let _ = writer.set_write_timeout(Some(WRITE_TIMEOUT));
        let _ = writer.set_nodelay(true);
        let link = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut links) = self.links.lock() {
            links.insert(
                link,
                Arc::new(Sender {
                    address,
                    stream: Mutex::new(writer),
                }),
            );
        }
        if let Ok(mut overlay) = self.overlay.lock() {
            overlay.link_up(link);
        }
        self.announce(Some(link));
        let mut reader = std::io::BufReader::new(stream);
        while let Ok(Some((frame, size))) = link::read(&mut reader) {
            if let Ok(mut peers) = self.peers.lock() {
                peers.received(address, size as u64);
            }
            match frame {
                Frame::Routes(routes) => {
                    let changed = self
                        .overlay
                        .lock()
                        .map(|mut overlay| overlay.learned(link, routes))
                        .unwrap_or(false);
                    if changed {
                        self.announce(None);
                    }
                }
                Frame::Data(packet) => {
                    let verdict = match self.overlay.lock() {
                        Ok(overlay) => overlay.incoming(packet),
                        Err(_) => Verdict::Drop,
                    };
                    self.act(verdict);
                }
                Frame::Unknown => {}
            }
        }
        if let Ok(mut links) = self.links.lock() {
            links.remove(&link);
        }
        let changed = self
            .overlay
            .lock()
            .map(|mut overlay| overlay.link_down(link))
            .unwrap_or(false);
        if changed {
            self.announce(None);
        }
    }

    /// Reads the TUN for good, routing what the node's kernel sends.
    pub fn run_tun(&self) {
        let Some(mut tun) = self.tun.as_ref() else {
            return;
        };
        let mut buffer = vec![0u8; 65_536];
        loop {
            let n = match tun.read(&mut buffer) {
                Ok(n) => n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    crate::logfmt::error(
                        "mycelium::data",
                        "Failed to read packet from TUN interface",
                        &[("err", error.to_string())],
                    );
                    return;
                }
            };
            let packet = buffer.get(..n).unwrap_or_default().to_vec();
            let verdict = match self.overlay.lock() {
                Ok(overlay) => overlay.outgoing(packet),
                Err(_) => Verdict::Drop,
            };
            self.act(verdict);
        }
    }
}
