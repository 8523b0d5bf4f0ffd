//! mycelium's log lines, as v0.7.10 writes them with `--log-format plain`
//! off a terminal (its tracing logfmt output): `ts=2026-12-01T09:00:00.123456Z
//! level=info target=mycelium::peer_manager message="Connected to new peer"
//! endpoint.address=10.0.2.2:9651`, on stdout, one line each.

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

/// `text` quoted as logfmt quotes a value (quotes and backslashes
/// escaped).
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One line: `ts=… level=LEVEL target=TARGET message="…"` and then each
/// field as `key=value` (quoted when it holds a space or a quote).
pub fn line(level: &str, target: &str, message: &str, fields: &[(&str, String)]) -> String {
    let mut out = format!(
        "ts={} level={level} target={target} message={}",
        timestamp(SystemTime::now()),
        quoted(message)
    );
    for (key, value) in fields {
        let shown = if value.contains([' ', '"', '=']) {
            quoted(value)
        } else {
            value.clone()
        };
        out.push_str(&format!(" {key}={shown}"));
    }
    out
}

/// Writes an info line.
pub fn info(target: &str, message: &str, fields: &[(&str, String)]) {
    println!("{}", line("info", target, message, fields));
}

/// Writes an error line.
pub fn error(target: &str, message: &str, fields: &[(&str, String)]) {
    println!("{}", line("error", target, message, fields));
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
    fn lines_have_ts_level_target_a_quoted_message_and_fields() {
        let text = line(
            "info",
            "mycelium::peer_manager",
            "peer \"a\" up",
            &[("endpoint.address", "10.0.2.2:9651".into())],
        );
        assert!(
            text.starts_with("ts=") && text.contains(" level=info target=mycelium::peer_manager "),
            "{text}"
        );
        assert!(
            text.ends_with("message=\"peer \\\"a\\\" up\" endpoint.address=10.0.2.2:9651"),
            "{text}"
        );
    }
}
