//! SNTP packets (RFC 4330, NTPv4's 48-byte header) and the arithmetic of
//! one exchange, with no I/O: the request a client sends, the checks a
//! reply must pass, and the clock offset and round-trip delay from the four
//! timestamps (T1 sent, T2 received by the server, T3 sent by it, T4
//! received).

use std::time::{Duration, SystemTime};

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch.
pub const UNIX_OFFSET: u64 = 2_208_988_800;

/// The header's length; extension fields and MACs after it are ignored.
pub const LEN: usize = 48;

/// A 64-bit NTP timestamp: seconds since 1900 in the high 32 bits, the
/// fraction of a second in the low 32.
pub type Timestamp = u64;

/// Why a reply is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the header.
    #[error("a reply of {0} bytes (an SNTP header is 48)")]
    Short(usize),
    /// Not a server's answer (mode 4) of version 3 or 4.
    #[error("not a server reply (version {version}, mode {mode})")]
    NotAReply {
        /// Its version number.
        version: u8,
        /// Its mode.
        mode: u8,
    },
    /// A kiss-o'-death (stratum 0) or an unsynchronised server (leap 3).
    #[error("the server is not synchronised or refused us (stratum {stratum}, leap {leap}{code})")]
    Unsynchronised {
        /// Its stratum.
        stratum: u8,
        /// Its leap indicator.
        leap: u8,
        /// A kiss code (`, DENY`), when it sent one.
        code: String,
    },
    /// The reply does not echo our transmit time: not an answer to us.
    #[error("the reply does not answer our request (origin timestamp differs)")]
    Origin,
    /// A server transmit time of zero.
    #[error("the reply carries no transmit time")]
    NoTime,
}

/// A server's answer, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// 1 for a reference clock, up to 15.
    pub stratum: u8,
    /// T2: when the request reached the server.
    pub received: Timestamp,
    /// T3: when the server sent the reply.
    pub transmitted: Timestamp,
}

/// `time` as an NTP timestamp (era 0 until 2036, then the next era's,
/// wrapping as NTP's 32-bit seconds do).
pub fn timestamp(time: SystemTime) -> Timestamp {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs().wrapping_add(UNIX_OFFSET) & 0xffff_ffff;
    let fraction = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// A timestamp as nanoseconds since the Unix epoch, in the era nearest
/// `near` (also a timestamp's nanoseconds): an NTP time carries no era.
fn unix_nanos(stamp: Timestamp, near: i128) -> i128 {
    let seconds = i128::from(stamp >> 32) - i128::from(UNIX_OFFSET);
    let fraction = (i128::from(stamp & 0xffff_ffff) * 1_000_000_000) >> 32;
    let era = 1i128 << 32;
    let mut nanos = seconds * 1_000_000_000 + fraction;
    let era_nanos = era * 1_000_000_000;
    while nanos + era_nanos / 2 < near {
        nanos += era_nanos;
    }
    while nanos - era_nanos / 2 > near {
        nanos -= era_nanos;
    }
    nanos
}

/// A client request (version 4, mode 3) whose transmit time is `sent`.
pub fn request(sent: Timestamp) -> [u8; LEN] {
    let mut packet = [0u8; LEN];
    // LI 0, VN 4, mode 3 (client).
    packet[0] = 0b00_100_011;
    packet[40..48].copy_from_slice(&sent.to_be_bytes());
    packet
}

fn field(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(slice) = bytes.get(at..at + 8) {
        word.copy_from_slice(slice);
    }
    u64::from_be_bytes(word)
}

/// Checks `bytes` as the answer to a request sent at `sent` (RFC 4330 §5:
/// mode, version, stratum, leap, the echoed origin, a transmit time).
pub fn parse(bytes: &[u8], sent: Timestamp) -> Result<Reply, PacketError> {
    if bytes.len() < LEN {
        return Err(PacketError::Short(bytes.len()));
    }
    let first = bytes.first().copied().unwrap_or(0);
    let (leap, version, mode) = (first >> 6, (first >> 3) & 0b111, first & 0b111);
    if mode != 4 || !(3..=4).contains(&version) {
        return Err(PacketError::NotAReply { version, mode });
    }
    let stratum = bytes.get(1).copied().unwrap_or(0);
    if stratum == 0 || stratum > 15 || leap == 3 {
        let code = if stratum == 0 {
            let id = bytes.get(12..16).unwrap_or_default();
            let text: String = id
                .iter()
                .filter(|b| b.is_ascii_alphanumeric())
                .map(|&b| char::from(b))
                .collect();
            format!(", {text}")
        } else {
            String::new()
        };
        return Err(PacketError::Unsynchronised {
            stratum,
            leap,
            code,
        });
    }
    if field(bytes, 24) != sent {
        return Err(PacketError::Origin);
    }
    let transmitted = field(bytes, 40);
    if transmitted == 0 {
        return Err(PacketError::NoTime);
    }
    Ok(Reply {
        stratum,
        received: field(bytes, 32),
        transmitted,
    })
}

/// One exchange's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// How far the local clock is behind the server's, in nanoseconds
    /// (positive: set it forward).
    pub offset_nanos: i128,
    /// The round trip, less the server's own time, in nanoseconds.
    pub delay_nanos: i128,
}

/// RFC 4330 §5: offset = ((T2 − T1) + (T3 − T4)) / 2, delay = (T4 − T1) −
/// (T3 − T2); the server's times read in the era nearest ours.
pub fn sample(sent: Timestamp, reply: &Reply, arrived: Timestamp) -> Sample {
    let t1 = unix_nanos(sent, 0);
    let t4 = unix_nanos(arrived, t1);
    let t2 = unix_nanos(reply.received, t1);
    let t3 = unix_nanos(reply.transmitted, t1);
    Sample {
        offset_nanos: ((t2 - t1) + (t3 - t4)) / 2,
        delay_nanos: (t4 - t1) - (t3 - t2),
    }
}

/// A signed nanosecond count as a [`Duration`] and its sign (true: forward).
pub fn magnitude(nanos: i128) -> (Duration, bool) {
    let abs = nanos.unsigned_abs();
    let seconds = u64::try_from(abs / 1_000_000_000).unwrap_or(u64::MAX);
    let sub = u32::try_from(abs % 1_000_000_000).unwrap_or(0);
    (Duration::new(seconds, sub), nanos >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07T00:00:00Z: 1,796,601,600 s after the Unix epoch (by hand:
    /// 20,794 days × 86,400 s).
    const UNIX: u64 = 1_796_601_600;

    #[test]
    fn timestamps_count_from_1900_with_a_32_bit_fraction() {
        let time = SystemTime::UNIX_EPOCH + Duration::new(UNIX, 500_000_000);
        let stamp = timestamp(time);
        assert_eq!(stamp >> 32, UNIX + 2_208_988_800);
        assert_eq!(stamp & 0xffff_ffff, 0x8000_0000, "half a second");
        assert_eq!(timestamp(SystemTime::UNIX_EPOCH) >> 32, 2_208_988_800);
    }

    #[test]
    fn a_request_is_a_version_4_client_packet_carrying_its_time() {
        let packet = request(0x0102_0304_0506_0708);
        assert_eq!(packet[0], 0x23, "LI 0, VN 4, mode 3");
        assert_eq!(&packet[40..48], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(packet[1..40].iter().all(|&b| b == 0));
    }

    fn reply(sent: Timestamp, received: Timestamp, transmitted: Timestamp) -> [u8; LEN] {
        let mut packet = [0u8; LEN];
        packet[0] = 0x24; // LI 0, VN 4, mode 4
        packet[1] = 2;
        packet[24..32].copy_from_slice(&sent.to_be_bytes());
        packet[32..40].copy_from_slice(&received.to_be_bytes());
        packet[40..48].copy_from_slice(&transmitted.to_be_bytes());
        packet
    }

    #[test]
    fn offset_and_delay_follow_rfc_4330() {
        let at = |s: u64, ms: u64| {
            timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(s * 1000 + ms))
        };
        // Our clock is 100 s behind: sent at 0.000, the server got it at
        // 100.010 and answered at 100.012; it arrived at 0.030 here.
        // Offset: ((100.010 - 0) + (100.012 - 0.030)) / 2 = 99.996 s;
        // delay: 0.030 - 0.002 = 0.028 s.
        let (t1, t2, t3, t4) = (
            at(UNIX, 0),
            at(UNIX + 100, 10),
            at(UNIX + 100, 12),
            at(UNIX, 30),
        );
        let parsed = parse(&reply(t1, t2, t3), t1).unwrap();
        let got = sample(t1, &parsed, t4);
        let close = |got: i128, want: i128| (got - want).abs() < 1_000;
        assert!(close(got.offset_nanos, 99_996_000_000), "{got:?}");
        assert!(close(got.delay_nanos, 28_000_000), "{got:?}");
        assert_eq!(
            magnitude(-1_500_000_000),
            (Duration::from_millis(1500), false)
        );
    }

    #[test]
    fn an_offset_across_the_2036_era_boundary_is_read_in_the_nearest_era() {
        // Here: 2036-02-07T06:28:10Z, 6 s before NTP seconds wrap; the
        // server is 10 s ahead, its seconds already wrapped to 4.
        let here = (u64::from(u32::MAX) - 5) << 32;
        let there = 4u64 << 32;
        let parsed = Reply {
            stratum: 1,
            received: there,
            transmitted: there,
        };
        let got = sample(here, &parsed, here);
        assert_eq!(got.offset_nanos, 10_000_000_000);
    }

    #[test]
    fn replies_that_are_not_answers_to_us_are_refused() {
        let sent = 0x1111_2222_3333_4444;
        let good = reply(sent, 5 << 32, 6 << 32);
        assert!(parse(&good, sent).is_ok());
        assert_eq!(parse(&good[..47], sent), Err(PacketError::Short(47)));
        assert_eq!(parse(&good, sent + 1), Err(PacketError::Origin));
        let mut client = good;
        client[0] = 0x23;
        assert!(matches!(
            parse(&client, sent),
            Err(PacketError::NotAReply { mode: 3, .. })
        ));
        let mut kiss = good;
        kiss[1] = 0;
        kiss[12..16].copy_from_slice(b"DENY");
        assert!(
            matches!(parse(&kiss, sent), Err(PacketError::Unsynchronised { code, .. }) if code == ", DENY")
        );
        let mut alarm = good;
        alarm[0] = 0xe4; // leap 3
        assert!(matches!(
            parse(&alarm, sent),
            Err(PacketError::Unsynchronised { leap: 3, .. })
        ));
        let mut silent = good;
        silent[40..48].fill(0);
        assert_eq!(parse(&silent, sent), Err(PacketError::NoTime));
    }
}
