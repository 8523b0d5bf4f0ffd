//! Durations in spore.toml: an integer in the key's unit (milliseconds for
//! `…_ms`, seconds for `…_s`), or a time span (`"5s"`, `"1m30s"`:
//! [`svc::timespan`]).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// A duration as a count of `unit_ms` milliseconds.
struct Span {
    unit_ms: u64,
}

impl Visitor<'_> for Span {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.unit_ms == 1 {
            "milliseconds"
        } else {
            "seconds"
        };
        write!(f, "{unit} (an integer) or a time span like \"5s\"")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
        Ok(n)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
        u64::try_from(n).map_err(|_| E::custom("a duration cannot be negative"))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
        svc::timespan::parse(text)
            .map(|span| svc::timespan::millis(span) / self.unit_ms.max(1))
            .map_err(E::custom)
    }
}

/// A `…_ms` key with a default when absent (`#[serde(default)]` on its struct).
pub fn required<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(Span { unit_ms: 1 })
}

/// A `…_s` key with a default when absent (`#[serde(default)]` on its struct).
pub fn required_seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(Span { unit_ms: 1_000 })
}

/// An optional `…_ms` key (`#[serde(default)]` on the field).
pub fn optional<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    deserializer.deserialize_any(Span { unit_ms: 1 }).map(Some)
}

/// An optional `…_s` key (`#[serde(default)]` on the field).
pub fn optional_seconds<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    deserializer
        .deserialize_any(Span { unit_ms: 1_000 })
        .map(Some)
}
