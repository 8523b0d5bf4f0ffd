//! Sizes in spore.toml: an integer in bytes, or a string with a binary
//! suffix as systemd writes them (`"512M"`, `"2G"`: K, M, G, T are powers
//! of 1024).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

struct Size;

impl Visitor<'_> for Size {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bytes (an integer) or a size like \"512M\" or \"2G\"")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
        Ok(n)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
        u64::try_from(n).map_err(|_| E::custom("a size cannot be negative"))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
        parse(text).map_err(E::custom)
    }
}

/// `"512M"`, `"2G"`, `"1024"`, `"1.5G"` in bytes (see
/// [`timespan::parse_size`]).
pub fn parse(text: &str) -> Result<u64, String> {
    timespan::parse_size(text)
}

/// An optional size key (`#[serde(default)]` on the field).
pub fn optional<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    deserializer.deserialize_any(Size).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_systemd_writes_them() {
        assert_eq!(parse("512M"), Ok(512 << 20));
        assert_eq!(parse("2G"), Ok(2 << 30));
        assert_eq!(parse("1.5K"), Ok(1536));
        assert_eq!(parse("4096"), Ok(4096));
        assert_eq!(parse("3 GiB"), Ok(3 << 30));
        assert!(parse("5X").unwrap_err().contains("K, M, G or T"));
        assert!(parse("-1M").is_err());
        assert!(parse("M").is_err());
    }
}
