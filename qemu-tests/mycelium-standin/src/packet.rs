//! IPv6 packets as mycelium's data plane reads them (version, hop limit,
//! source, destination) and the ICMPv6 errors it answers with
//! (`mycelium/src/data.rs`): destination unreachable (no route, address,
//! source address failed policy) and time exceeded, each quoting at most
//! 1280 − 48 bytes of the packet it answers.

use std::net::Ipv6Addr;

/// The fixed IPv6 header's size.
pub const HEADER: usize = 40;

/// How much of the invoking packet an ICMPv6 error quotes: the minimum
/// IPv6 MTU less the error's own headers (RFC 4443 §2.4 (c)).
const QUOTE: usize = 1280 - HEADER - 8;

/// ICMPv6's next-header number.
const ICMPV6: u8 = 58;

/// The ICMPv6 errors the data plane sends back to the TUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmp {
    /// Destination unreachable, code 0: no route to the destination.
    NoRoute,
    /// Destination unreachable, code 3: an address of the node's own /64
    /// that nothing on the node holds.
    Address,
    /// Destination unreachable, code 5: a source outside 400::/7.
    SourcePolicy,
    /// Time exceeded, code 0: hop limit exceeded in transit.
    HopLimit,
}

impl Icmp {
    /// ICMPv6 type and code.
    pub fn type_and_code(self) -> (u8, u8) {
        match self {
            Icmp::NoRoute => (1, 0),
            Icmp::Address => (1, 3),
            Icmp::SourcePolicy => (1, 5),
            Icmp::HopLimit => (3, 0),
        }
    }
}

/// The header fields the data plane routes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Hop limit (byte 7).
    pub hop_limit: u8,
    /// Source address (bytes 8..24).
    pub source: Ipv6Addr,
    /// Destination address (bytes 24..40).
    pub destination: Ipv6Addr,
}

fn address(bytes: &[u8]) -> Option<Ipv6Addr> {
    let octets: [u8; 16] = bytes.try_into().ok()?;
    Some(Ipv6Addr::from(octets))
}

/// The header of an IPv6 packet; `None` for anything shorter than a
/// header or of another IP version (mycelium drops those silently).
pub fn header(packet: &[u8]) -> Option<Header> {
    if packet.len() < HEADER || packet.first()? & 0xf0 != 0x60 {
        return None;
    }
    Some(Header {
        hop_limit: *packet.get(7)?,
        source: address(packet.get(8..24)?)?,
        destination: address(packet.get(24..40)?)?,
    })
}

/// Sets the hop limit of an IPv6 packet.
pub fn set_hop_limit(packet: &mut [u8], hop_limit: u8) {
    if let Some(byte) = packet.get_mut(7) {
        *byte = hop_limit;
    }
}

/// Whether `address` is in mycelium's 400::/7.
pub fn in_overlay(address: Ipv6Addr) -> bool {
    address.octets()[0] & 0xfe == 0x04
}

/// The one's-complement sum of `bytes` as 16-bit big-endian words (a
/// trailing odd byte padded with zero), not yet folded.
fn sum(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|pair| match pair {
            [high, low] => u32::from(u16::from_be_bytes([*high, *low])),
            [high] => u32::from(u16::from_be_bytes([*high, 0])),
            _ => 0,
        })
        .sum()
}

/// The ICMPv6 checksum of `message` between `source` and `destination`
/// (RFC 4443 §2.3: over the RFC 8200 pseudo-header and the message).
pub fn icmpv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut total = sum(&source.octets())
        + sum(&destination.octets())
        + (length >> 16)
        + (length & 0xffff)
        + u32::from(ICMPV6)
        + sum(message);
    while total > 0xffff {
        total = (total & 0xffff) + (total >> 16);
    }
    !(total as u16)
}

/// An ICMPv6 error from `source` to `destination` with hop limit
/// `hop_limit`, quoting the start of `invoking`.
pub fn icmp_error(
    kind: Icmp,
    source: Ipv6Addr,
    destination: Ipv6Addr,
    hop_limit: u8,
    invoking: &[u8],
) -> Vec<u8> {
    let quoted = invoking.get(..invoking.len().min(QUOTE)).unwrap_or(&[]);
    let (kind, code) = kind.type_and_code();
    let mut message = vec![kind, code, 0, 0, 0, 0, 0, 0];
    message.extend_from_slice(quoted);
    let checksum = icmpv6_checksum(source, destination, &message).to_be_bytes();
    if let Some(field) = message.get_mut(2..4) {
        field.copy_from_slice(&checksum);
    }
    let length = u16::try_from(message.len())
        .unwrap_or(u16::MAX)
        .to_be_bytes();
    let mut packet = vec![0x60, 0, 0, 0, length[0], length[1], ICMPV6, hop_limit];
    packet.extend_from_slice(&source.octets());
    packet.extend_from_slice(&destination.octets());
    packet.extend_from_slice(&message);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071's own example: the words 0x0001 0xf203 0xf4f5 0xf6f7 sum
    /// (folded) to 0xddf2, so the checksum field is its complement.
    #[test]
    fn the_sum_folds_as_rfc_1071_shows() {
        let mut total = sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        while total > 0xffff {
            total = (total & 0xffff) + (total >> 16);
        }
        assert_eq!(total, 0xddf2);
    }

    #[test]
    fn an_error_is_a_valid_icmpv6_packet_that_quotes_at_most_1232_bytes() {
        let source: Ipv6Addr = "4a1:2::1".parse().unwrap();
        let destination: Ipv6Addr = "5ff:3::2".parse().unwrap();
        let mut invoking = vec![0x60, 0, 0, 0, 0, 0, 17, 9];
        invoking.extend_from_slice(&destination.octets());
        invoking.extend_from_slice(&source.octets());
        invoking.resize(1400, 0xab);
        let packet = icmp_error(Icmp::NoRoute, source, destination, 9, &invoking);
        assert_eq!(packet.len(), 1280, "at most the minimum MTU");
        let head = header(&packet).unwrap();
        assert_eq!(
            (head.source, head.destination, head.hop_limit),
            (source, destination, 9)
        );
        assert_eq!(packet[6], 58);
        assert_eq!(
            usize::from(u16::from_be_bytes([packet[4], packet[5]])),
            1280 - 40
        );
        assert_eq!((packet[40], packet[41]), (1, 0));
        assert_eq!(&packet[48..88], &invoking[..40]);
        // A receiver's check: the sum over pseudo-header and message,
        // checksum included, is all ones (the complement is zero).
        assert_eq!(icmpv6_checksum(source, destination, &packet[40..]), 0);
    }

    #[test]
    fn only_ipv6_headers_are_read() {
        assert_eq!(header(&[0x60; 39]), None);
        let mut ipv4 = vec![0x45; 60];
        assert_eq!(header(&ipv4), None);
        ipv4[0] = 0x60;
        assert!(header(&ipv4).is_some());
        assert!(in_overlay("400::1".parse().unwrap()));
        assert!(in_overlay("5ff::1".parse().unwrap()));
        assert!(!in_overlay("600::1".parse().unwrap()));
        assert!(!in_overlay("fe80::1".parse().unwrap()));
    }
}
