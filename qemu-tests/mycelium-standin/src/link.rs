//! A peer link's framing on its TCP connection: each frame is a kind
//! byte, a big-endian u16 length and that many bytes. Kinds: a route
//! announcement (the sender's whole table, nine bytes a route: the /64 and
//! its hop count) and a data packet (one IPv6 packet).

use std::collections::BTreeMap;
use std::io::{self, Read};

use crate::overlay::Prefix;

const ROUTES: u8 = 1;
const DATA: u8 = 2;

/// One frame read from a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The peer's whole table.
    Routes(BTreeMap<Prefix, u8>),
    /// An IPv6 packet.
    Data(Vec<u8>),
    /// A kind this stand-in does not know (skipped).
    Unknown,
}

fn frame(kind: u8, payload: &[u8]) -> Option<Vec<u8>> {
    let length = u16::try_from(payload.len()).ok()?.to_be_bytes();
    let mut bytes = Vec::with_capacity(payload.len() + 3);
    bytes.push(kind);
    bytes.extend_from_slice(&length);
    bytes.extend_from_slice(payload);
    Some(bytes)
}

/// An announcement frame (at most 7,281 routes fit; more are left out).
pub fn routes(routes: &[(Prefix, u8)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (prefix, hops) in routes.iter().take(usize::from(u16::MAX) / 9) {
        payload.extend_from_slice(prefix);
        payload.push(*hops);
    }
    frame(ROUTES, &payload).unwrap_or_default()
}

/// A data frame; `None` for a packet over 65,535 bytes.
pub fn data(packet: &[u8]) -> Option<Vec<u8>> {
    frame(DATA, packet)
}

/// Reads one frame; `Ok(None)` at a clean end of the stream.
pub fn read(stream: &mut impl Read) -> io::Result<Option<(Frame, usize)>> {
    let mut head = [0u8; 3];
    match stream.read_exact(&mut head) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let [kind, high, low] = head;
    let mut payload = vec![0u8; usize::from(u16::from_be_bytes([high, low]))];
    stream.read_exact(&mut payload)?;
    let size = payload.len() + 3;
    let frame = match kind {
        ROUTES => Frame::Routes(
            payload
                .chunks_exact(9)
                .filter_map(|route| {
                    let (prefix, hops) = route.split_at(8);
                    Some((prefix.try_into().ok()?, *hops.first()?))
                })
                .collect(),
        ),
        DATA => Frame::Data(payload),
        _ => Frame::Unknown,
    };
    Ok(Some((frame, size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_as_written() {
        let mut bytes = routes(&[([4, 0xaa, 0, 0, 0, 0, 0, 1], 0), ([5; 8], 3)]);
        bytes.extend(data(&[0x60; 48]).unwrap());
        bytes.extend(frame(9, b"later").unwrap());
        let mut stream = &bytes[..];
        let (first, size) = read(&mut stream).unwrap().unwrap();
        assert_eq!(size, 3 + 18);
        let Frame::Routes(table) = first else {
            panic!("{first:?}")
        };
        assert_eq!(table.get(&[5; 8]), Some(&3));
        assert_eq!(table.len(), 2);
        assert_eq!(
            read(&mut stream).unwrap().unwrap().0,
            Frame::Data(vec![0x60; 48])
        );
        assert_eq!(read(&mut stream).unwrap().unwrap().0, Frame::Unknown);
        assert!(read(&mut stream).unwrap().is_none());
        assert!(data(&vec![0; 70_000]).is_none());
    }
}
