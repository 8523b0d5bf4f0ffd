//! mycelium's log lines: `ts=2026-12-01T09:00:00.123456Z level=INFO
//! message="…"` on stdout, one line each (its tracing logfmt output).

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC timestamp with microseconds, RFC 3339.
pub fn timestamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's
/// algorithm for the proleptic Gregorian calendar.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// One line: `ts=… level=LEVEL message="…"` (quotes and backslashes in
/// the message escaped).
pub fn line(level: &str, message: &str) -> String {
    let escaped = message.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "ts={} level={level} message=\"{escaped}\"",
        timestamp(SystemTime::now())
    )
}

/// Writes an INFO line.
pub fn info(message: &str) {
    println!("{}", line("INFO", message));
}

/// Writes an ERROR line.
pub fn error(message: &str) {
    println!("{}", line("ERROR", message));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = UNIX_EPOCH + Duration::from_micros(1_796_117_400_123_456);
        assert_eq!(timestamp(at), "2026-12-01T09:30:00.123456Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(timestamp(leap).starts_with("2000-02-29T00:00:00"));
    }

    #[test]
    fn lines_have_ts_level_and_a_quoted_message() {
        let text = line("INFO", "peer \"a\" up");
        assert!(
            text.starts_with("ts=") && text.contains(" level=INFO "),
            "{text}"
        );
        assert!(text.ends_with("message=\"peer \\\"a\\\" up\""), "{text}");
    }
}
