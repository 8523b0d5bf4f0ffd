//! Time spans as people and systemd write them: `"5s"`, `"1m30s"`,
//! `"500ms"`, `"2 min"`, `"1h 30min"`, for every duration a file takes
//! (a key named `…_ms` also takes a bare integer of milliseconds).

use std::time::Duration;

/// Why a text is not a time span.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimespanError {
    /// Nothing but spaces.
    #[error("an empty time span")]
    Empty,
    /// A number with no unit after it.
    #[error("`{0}` has no unit: write it as 5s, 1m30s or 500ms")]
    NoUnit(String),
    /// A unit not known.
    #[error("unknown unit `{unit}` in `{text}` (units: ms, s, m or min, h, d)")]
    Unit {
        /// The unit as written.
        unit: String,
        /// The whole span.
        text: String,
    },
    /// Something that is not a number where one belongs.
    #[error("`{0}` is not a time span like 5s, 1m30s or 500ms")]
    Malformed(String),
    /// More than a Duration holds.
    #[error("`{0}` is too long")]
    Overflow(String),
}

/// The duration `text` spells: numbers each followed by a unit (`us`,
/// `ms`, `s`/`sec`/`seconds`, `m`/`min`/`minutes`, `h`/`hours`,
/// `d`/`days`), spaces allowed between them, summed.
pub fn parse(text: &str) -> Result<Duration, TimespanError> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(TimespanError::Empty);
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let n: u64 = number
            .parse()
            .map_err(|_| TimespanError::Malformed(text.to_owned()))?;
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(TimespanError::NoUnit(text.to_owned()));
        }
        let nanos_per: u64 = match unit {
            "us" | "usec" => 1_000,
            "ms" | "msec" => 1_000_000,
            "s" | "sec" | "second" | "seconds" => 1_000_000_000,
            "m" | "min" | "minute" | "minutes" => 60_000_000_000,
            "h" | "hr" | "hour" | "hours" => 3_600_000_000_000,
            "d" | "day" | "days" => 86_400_000_000_000,
            _ => {
                return Err(TimespanError::Unit {
                    unit: unit.to_owned(),
                    text: text.to_owned(),
                })
            }
        };
        let nanos = u128::from(n) * u128::from(nanos_per);
        let secs = u64::try_from(nanos / 1_000_000_000)
            .map_err(|_| TimespanError::Overflow(text.to_owned()))?;
        // The remainder of a division by 10^9 fits in u32.
        let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
        total = total
            .checked_add(Duration::new(secs, sub))
            .ok_or_else(|| TimespanError::Overflow(text.to_owned()))?;
        rest = after.trim_start();
    }
    Ok(total)
}

/// Milliseconds in `span`, saturated at `u64::MAX`.
pub fn millis(span: Duration) -> u64 {
    u64::try_from(span.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_sum_their_parts() {
        // Each figure computed by hand from the units, not by the parser.
        let cases = [
            ("5s", 5_000),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("1min 30s", 90_000),
            ("2 min", 120_000),
            ("1h 30min", 5_400_000),
            ("1d", 86_400_000),
            ("1500us", 1),
            (" 10 s ", 10_000),
            ("0s", 0),
            ("1h1m1s1ms", 3_661_001),
        ];
        for (text, ms) in cases {
            assert_eq!(parse(text).map(millis), Ok(ms), "{text}");
        }
    }

    #[test]
    fn what_is_not_a_span_says_why() {
        assert_eq!(parse(""), Err(TimespanError::Empty));
        assert_eq!(parse("5"), Err(TimespanError::NoUnit("5".into())));
        assert!(
            matches!(parse("5 fortnights"), Err(TimespanError::Unit { unit, .. }) if unit == "fortnights")
        );
        assert!(matches!(parse("soon"), Err(TimespanError::Malformed(_))));
        assert!(matches!(parse("-5s"), Err(TimespanError::Malformed(_))));
        assert!(matches!(
            parse("99999999999999999999d"),
            Err(TimespanError::Malformed(_) | TimespanError::Overflow(_))
        ));
        assert!(matches!(
            parse("999999999999999d"),
            Err(TimespanError::Overflow(_))
        ));
    }
}
