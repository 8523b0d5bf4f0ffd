//! Time as people write it, for files and command lines: spans as systemd
//! takes them (`"5s"`, `"1m30s"`, `"500ms"`, `"2 min"`, `"1h 30min"`: every
//! duration a service file or spore.toml takes, where a key named `…_ms`
//! also takes a bare integer of milliseconds), and moments as journalctl's
//! `--since` takes them (`10m ago`, `-1h`, `today`,
//! `2026-12-07T03:00:00Z`, `2026-12-07 03:00`, all UTC); and sizes as
//! systemd writes them (`"512M"`, `"2G"`), for the same files and lines.

use std::time::{Duration, SystemTime};

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

/// Why a text is not a moment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a time: write 10m ago, -1h, today, yesterday, 2026-12-07 or 2026-12-07T03:00:00Z (UTC)")]
pub struct MomentError(pub String);

/// The moment `text` names, relative to `now` where it is relative:
/// `now`, `today` and `yesterday` (UTC midnight), a span back from now
/// (`10m ago`, `-10m`, `10m`), or a UTC date and time (`2026-12-07`,
/// `2026-12-07T03:00`, `2026-12-07 03:00:05`, a final `Z` allowed).
pub fn moment(text: &str, now: SystemTime) -> Result<SystemTime, MomentError> {
    let fail = || MomentError(text.to_owned());
    let text = text.trim();
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let midnight = SystemTime::UNIX_EPOCH + Duration::from_secs(since_epoch - since_epoch % 86_400);
    match text {
        "now" => return Ok(now),
        "today" => return Ok(midnight),
        "yesterday" => {
            return midnight
                .checked_sub(Duration::from_secs(86_400))
                .ok_or_else(fail)
        }
        _ => {}
    }
    if text.len() >= 10 && text.as_bytes().get(4) == Some(&b'-') {
        return civil(text).ok_or_else(fail);
    }
    let span = text
        .strip_suffix("ago")
        .or_else(|| text.strip_prefix('-'))
        .unwrap_or(text);
    let span = parse(span).map_err(|_| fail())?;
    now.checked_sub(span).ok_or_else(fail)
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS]][Z]` in UTC.
fn civil(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = match text.get(10..11) {
        None => (text, ""),
        Some("T" | " ") => (text.get(..10)?, text.get(11..)?),
        Some(_) => return None,
    };
    let number = |s: Option<&str>| s?.parse::<u64>().ok();
    let year = number(date.get(0..4))?;
    let month = number(date.get(5..7))?;
    let day = number(date.get(8..10))?;
    if date.get(7..8) != Some("-") || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut parts = time.split(':');
    let hours = parts
        .next()
        .filter(|p| !p.is_empty())
        .map_or(Some(0), |p| p.parse::<u64>().ok())?;
    let minutes = parts.next().map_or(Some(0), |p| p.parse::<u64>().ok())?;
    // Seconds, with milliseconds as spore's log lines carry them.
    let (seconds, millis) = match parts.next() {
        None => (0, 0),
        Some(part) => match part.split_once('.') {
            None => (part.parse::<u64>().ok()?, 0),
            Some((whole, fraction)) => {
                let digits: String = fraction.chars().take(3).collect();
                if digits.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let scale = 10u64.pow(3 - u32::try_from(digits.len()).ok()?);
                (
                    whole.parse::<u64>().ok()?,
                    digits.parse::<u64>().ok()? * scale,
                )
            }
        },
    };
    if parts.next().is_some() || hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    let total = days
        .checked_mul(86_400)?
        .checked_add(hours * 3600 + minutes * 60 + seconds)?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(total) + Duration::from_millis(millis))
}

/// `time` as spore writes times in its lines: `2026-12-07T03:32:52.206Z`
/// (UTC, milliseconds; no time zone database exists on a bare node).
pub fn utc_text(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rest = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// A UTC time as spore writes them (`2026-12-07T03:32:52.206Z`), read back.
pub fn utc(text: &str) -> Option<SystemTime> {
    civil(text)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (the
/// usual era arithmetic: years counted from March, so February's length
/// falls at the end of one), None before 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let year = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = year / 400;
    let year_of_era = year % 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).checked_sub(719_468)
}

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `time` as HTTP's Date header writes it (RFC 9110 IMF-fixdate:
/// `Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days);
    let rest = secs % 86_400;
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS.get((days % 7) as usize).copied().unwrap_or("Thu"),
        MONTHS
            .get(month.saturating_sub(1) as usize)
            .copied()
            .unwrap_or("Jan"),
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// An IMF-fixdate Date header read back (None for any other form).
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    let mut words = text.trim().split(' ');
    let _weekday = words.next()?;
    let day = words.next()?;
    let month_word = words.next()?;
    let month = MONTHS.iter().position(|m| *m == month_word)? + 1;
    let year = words.next()?;
    let time = words.next()?;
    if words.next() != Some("GMT") {
        return None;
    }
    civil(&format!("{year}-{month:02}-{day}T{time}Z"))
}

/// (year, month, day) of a day count since 1970-01-01 (the inverse of
/// [`days_from_civil`]).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Milliseconds since the Unix epoch at `time` (0 before it).
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

/// Milliseconds in `span`, saturated at `u64::MAX`.
pub fn millis(span: Duration) -> u64 {
    u64::try_from(span.as_millis()).unwrap_or(u64::MAX)
}

/// `"512M"`, `"2G"`, `"1024"`, `"1.5G"` in bytes: an integer, or a number
/// with a binary suffix (K, M, G, T are powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let (number, unit) = match trimmed
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphabetic())
    {
        Some((at, _)) => trimmed.split_at(at),
        None => (trimmed, ""),
    };
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => {
            return Err(format!(
                "`{text}`: a size is bytes, or a number with K, M, G or T (powers of 1024)"
            ))
        }
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}`: not a size (e.g. \"512M\", \"2G\")"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("`{text}`: a size cannot be negative"));
    }
    let bytes = value * scale as f64;
    if bytes >= u64::MAX as f64 {
        return Err(format!("`{text}`: too large"));
    }
    Ok(bytes as u64)
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
    fn moments_read_as_journalctl_takes_them() {
        // 2026-12-07T03:20:00Z, as `date -u -d 2026-12-07T03:20:00 +%s` says.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_613_600);
        let at = |text: &str| moment(text, now).map(unix_millis).map(|ms| ms / 1000);
        assert_eq!(at("now"), Ok(1_796_613_600));
        assert_eq!(at("10m ago"), Ok(1_796_613_000));
        assert_eq!(at("-10m"), Ok(1_796_613_000));
        assert_eq!(at("1h30m"), Ok(1_796_608_200));
        assert_eq!(at("today"), Ok(1_796_601_600));
        assert_eq!(at("yesterday"), Ok(1_796_515_200));
        // Each computed by `date -u -d … +%s`.
        assert_eq!(at("2026-12-07"), Ok(1_796_601_600));
        assert_eq!(at("2026-12-07T03:00:00Z"), Ok(1_796_612_400));
        assert_eq!(at("2026-12-07 03:00"), Ok(1_796_612_400));
        assert_eq!(at("2024-02-29T12:34:56"), Ok(1_709_210_096));
        assert_eq!(at("2000-03-01"), Ok(951_868_800));
        assert_eq!(at("1970-01-01"), Ok(0));
        let precise = utc("2026-12-07T03:32:52.206Z").map(unix_millis);
        assert_eq!(precise, Some(1_796_614_372_206));
        for bad in [
            "soon",
            "2026-13-01",
            "2026-12-07T25:00",
            "2026/12/07",
            "1969-12-31",
        ] {
            assert!(moment(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        // RFC 9110's own example: 784111777 s after the epoch.
        let example = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(example), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(example)
        );
        // 2026-12-07T03:20:00Z was a Monday (`date -u -d @1796613600`).
        let monday = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_613_600);
        assert_eq!(http_date(monday), "Mon, 07 Dec 2026 03:20:00 GMT");
        assert_eq!(parse_http_date(&http_date(monday)), Some(monday));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
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
