//! The overlay's routing decisions, without I/O: which /64 each peer link
//! reaches and at what hop count, and what becomes of a packet read from
//! the TUN or received from a link.
//!
//! Real mycelium runs a Babel variant with sequence numbers and encrypts
//! every packet for its destination; the stand-in keeps a plain distance
//! vector (each link sends its whole table whenever it changes, split
//! horizon, 16 hops is unreachable) and sends packets in the clear. What a
//! node sees is the same: its /64 reachable over the TUN, packets to other
//! nodes' 400::/7 addresses delivered whatever the path, a hop limit that
//! drops by one per overlay hop, and the same ICMPv6 errors at once when
//! a destination cannot be reached (`mycelium/src/data.rs`).

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use crate::packet::{self, Icmp};

/// A /64: the first eight bytes of an address.
pub type Prefix = [u8; 8];

/// A hop count at which a route is unreachable.
pub const INFINITY: u8 = 16;

/// One peer connection.
pub type LinkId = u64;

/// The /64 of `address`.
pub fn prefix(address: Ipv6Addr) -> Prefix {
    let octets = address.octets();
    let mut prefix = [0; 8];
    prefix.copy_from_slice(octets.get(..8).unwrap_or(&[0; 8]));
    prefix
}

/// What to do with a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send it over this link.
    Link(LinkId, Vec<u8>),
    /// Write it to the TUN (a packet for this node, or an ICMPv6 error).
    Tun(Vec<u8>),
    /// Nothing (not IPv6, or out of hops in transit).
    Drop,
}

/// The node's routing state.
#[derive(Debug)]
pub struct Overlay {
    /// The node's own overlay address.
    own: Ipv6Addr,
    /// What each link last announced: prefix → hops from that link's far
    /// end.
    announced: BTreeMap<LinkId, BTreeMap<Prefix, u8>>,
}

impl Overlay {
    /// A node at `own` with no links.
    pub fn new(own: Ipv6Addr) -> Overlay {
        Overlay {
            own,
            announced: BTreeMap::new(),
        }
    }

    /// The best link towards `prefix` and its hop count (fewest hops; the
    /// lowest link id among equals, so the choice is stable).
    pub fn best(&self, prefix: &Prefix) -> Option<(LinkId, u8)> {
        self.announced
            .iter()
            .filter_map(|(link, routes)| routes.get(prefix).map(|hops| (*link, *hops + 1)))
            .filter(|(_, hops)| *hops < INFINITY)
            .min_by_key(|(link, hops)| (*hops, *link))
    }

    /// Every reachable prefix with its best link and hop count.
    pub fn table(&self) -> BTreeMap<Prefix, (LinkId, u8)> {
        let mut table = BTreeMap::new();
        let prefixes: std::collections::BTreeSet<Prefix> = self
            .announced
            .values()
            .flat_map(|routes| routes.keys().copied())
            .collect();
        for prefix in prefixes {
            if prefix == self::prefix(self.own) {
                continue;
            }
            if let Some(best) = self.best(&prefix) {
                table.insert(prefix, best);
            }
        }
        table
    }

    /// What this node announces over `link`: its own /64 at 0 hops, and
    /// every route it uses that does not go over `link` (split horizon).
    pub fn announcement_for(&self, link: LinkId) -> Vec<(Prefix, u8)> {
        let mut routes = vec![(prefix(self.own), 0)];
        routes.extend(
            self.table()
                .into_iter()
                .filter(|(_, (via, _))| *via != link)
                .map(|(prefix, (_, hops))| (prefix, hops)),
        );
        routes
    }

    /// A link came up (it announces nothing yet).
    pub fn link_up(&mut self, link: LinkId) {
        self.announced.entry(link).or_default();
    }

    /// `link` announced `routes` (its whole table); whether this node's
    /// table changed, so it must announce again.
    pub fn learned(&mut self, link: LinkId, routes: BTreeMap<Prefix, u8>) -> bool {
        let before = self.table();
        self.announced.insert(link, routes);
        self.table() != before
    }

    /// A link went away; whether this node's table changed.
    pub fn link_down(&mut self, link: LinkId) -> bool {
        let before = self.table();
        self.announced.remove(&link);
        self.table() != before
    }

    /// The links there are.
    pub fn links(&self) -> Vec<LinkId> {
        self.announced.keys().copied().collect()
    }

    /// A packet the node's kernel wrote to the TUN (going out).
    pub fn outgoing(&self, packet: Vec<u8>) -> Verdict {
        let Some(head) = packet::header(&packet) else {
            return Verdict::Drop;
        };
        if prefix(head.destination) == prefix(self.own) {
            // Nothing on this node holds that address of its own /64.
            return Verdict::Tun(packet::icmp_error(
                Icmp::Address,
                self.own,
                head.source,
                64,
                &packet,
            ));
        }
        if !packet::in_overlay(head.source) {
            return Verdict::Tun(packet::icmp_error(
                Icmp::SourcePolicy,
                self.own,
                head.source,
                64,
                &packet,
            ));
        }
        if head.hop_limit < 2 {
            return Verdict::Tun(packet::icmp_error(
                Icmp::HopLimit,
                head.source,
                head.source,
                head.hop_limit,
                &packet,
            ));
        }
        match self.best(&prefix(head.destination)) {
            Some((link, _)) => Verdict::Link(link, packet),
            None => Verdict::Tun(packet::icmp_error(
                Icmp::NoRoute,
                head.source,
                head.source,
                head.hop_limit,
                &packet,
            )),
        }
    }

    /// A packet that arrived over a link: one hop spent, then delivered
    /// here, passed on, or dropped when out of hops or routes.
    pub fn incoming(&self, mut packet: Vec<u8>) -> Verdict {
        let Some(head) = packet::header(&packet) else {
            return Verdict::Drop;
        };
        let hop_limit = head.hop_limit.saturating_sub(1);
        if hop_limit == 0 {
            return Verdict::Drop;
        }
        packet::set_hop_limit(&mut packet, hop_limit);
        if prefix(head.destination) == prefix(self.own) {
            return Verdict::Tun(packet);
        }
        match self.best(&prefix(head.destination)) {
            Some((link, _)) => Verdict::Link(link, packet),
            None => Verdict::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    fn packet(source: &str, destination: &str, hop_limit: u8) -> Vec<u8> {
        let mut packet = vec![0x60, 0, 0, 0, 0, 0, 59, hop_limit];
        packet.extend_from_slice(&address(source).octets());
        packet.extend_from_slice(&address(destination).octets());
        packet
    }

    fn routes(entries: &[(&str, u8)]) -> BTreeMap<Prefix, u8> {
        entries
            .iter()
            .map(|(a, hops)| (prefix(address(a)), *hops))
            .collect()
    }

    #[test]
    fn a_packet_takes_the_shortest_path_and_falls_back_when_a_link_goes() {
        let mut node = Overlay::new(address("4aa::1"));
        node.link_up(1);
        node.link_up(2);
        assert!(node.learned(1, routes(&[("4bb::1", 0), ("4cc::1", 3)])));
        assert!(node.learned(2, routes(&[("4cc::1", 0)])));
        let to_c = packet("4aa::1", "4cc::9", 64);
        assert_eq!(node.outgoing(to_c.clone()), Verdict::Link(2, to_c.clone()));
        assert!(node.link_down(2));
        assert_eq!(node.outgoing(to_c.clone()), Verdict::Link(1, to_c));
        // Split horizon: what is reached over link 1 is not told to link 1.
        let told = node.announcement_for(1);
        assert_eq!(told, vec![(prefix(address("4aa::")), 0)]);
        let told = node.announcement_for(3);
        assert!(told.contains(&(prefix(address("4cc::")), 4)), "{told:?}");
    }

    #[test]
    fn sixteen_hops_is_unreachable() {
        let mut node = Overlay::new(address("4aa::1"));
        node.link_up(1);
        node.learned(1, routes(&[("4bb::1", 15)]));
        assert_eq!(node.best(&prefix(address("4bb::1"))), None);
        let verdict = node.outgoing(packet("4aa::1", "4bb::1", 64));
        let Verdict::Tun(icmp) = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!((icmp[40], icmp[41]), (1, 0), "no route");
    }

    #[test]
    fn the_tun_side_answers_as_mycelium_does() {
        let node = Overlay::new(address("4aa::1"));
        let errors = [
            (
                packet("4aa::1", "4aa::77", 64),
                (1, 3),
                "4aa::1",
                "4aa::1",
                64,
            ),
            (
                packet("2001:db8::1", "4bb::1", 64),
                (1, 5),
                "4aa::1",
                "2001:db8::1",
                64,
            ),
            (packet("4aa::1", "4bb::1", 1), (3, 0), "4aa::1", "4aa::1", 1),
            (packet("4aa::1", "4bb::1", 9), (1, 0), "4aa::1", "4aa::1", 9),
        ];
        for (sent, kind, from, to, hops) in errors {
            let Verdict::Tun(icmp) = node.outgoing(sent.clone()) else {
                panic!("no answer to {sent:?}")
            };
            assert_eq!((icmp[40], icmp[41]), kind);
            let head = packet::header(&icmp).unwrap();
            assert_eq!(head.source, address(from));
            assert_eq!(head.destination, address(to));
            assert_eq!(head.hop_limit, hops);
            assert_eq!(&icmp[48..], &sent[..]);
        }
        assert_eq!(node.outgoing(vec![0x45; 60]), Verdict::Drop);
    }

    #[test]
    fn a_hop_over_a_link_costs_one_and_the_last_one_drops() {
        let mut node = Overlay::new(address("4aa::1"));
        node.link_up(1);
        node.learned(1, routes(&[("4bb::1", 0)]));
        let Verdict::Tun(here) = node.incoming(packet("4bb::1", "4aa::1", 64)) else {
            panic!("not delivered")
        };
        assert_eq!(here[7], 63);
        let Verdict::Link(1, on) = node.incoming(packet("4cc::1", "4bb::1", 5)) else {
            panic!("not passed on")
        };
        assert_eq!(on[7], 4);
        assert_eq!(node.incoming(packet("4cc::1", "4bb::1", 1)), Verdict::Drop);
        assert_eq!(node.incoming(packet("4cc::1", "4dd::1", 9)), Verdict::Drop);
    }
}
