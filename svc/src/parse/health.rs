//! `[health]` and `[[health.action]]`: the probe, its timing, its target
//! checked where it is written.

use std::time::Duration;

use crate::error::ErrorKind;
use crate::exec::Command;
use crate::section::{Located, Section};
use crate::service::{HealthCheck, Probe};

use super::values::choice;

#[derive(Clone, Copy)]
pub(super) enum ProbeType {
    Tcp,
    Http,
    Exec,
}

pub(super) fn read_health(section: &mut Section<'_, '_, '_>) -> Option<HealthCheck> {
    let probe_type = choice(
        section,
        "type",
        &[
            ("tcp", ProbeType::Tcp),
            ("http", ProbeType::Http),
            ("exec", ProbeType::Exec),
        ],
    );
    if probe_type.is_none() && section.value("type").is_none() {
        section.missing("type");
    }
    let target = section.string("target");
    if target.is_none() {
        section.missing("target");
    }
    let expect_status = section.unsigned("expect_status");
    let timing = read_timing(section, Duration::from_millis(5_000));
    let target = target?;
    let probe = match probe_type? {
        ProbeType::Tcp => Probe::Tcp {
            target: checked_tcp_target(section, target)?,
        },
        ProbeType::Http => Probe::Http {
            target: checked_http_target(section, target)?,
            expect_status: checked_status(section, expect_status.clone())?,
        },
        ProbeType::Exec => Probe::Exec {
            command: checked_command(section, "target", target)?,
        },
    };
    if let (Some(status), false) = (&expect_status, matches!(probe, Probe::Http { .. })) {
        section.out_of_range(
            "expect_status",
            &status.span,
            "applies only to type = \"http\"",
        );
        return None;
    }
    Some(HealthCheck {
        name: "health".into(),
        probe,
        interval: timing.0,
        timeout: timing.1,
        retries: timing.2,
        start_period: timing.3,
    })
}

/// interval, timeout, retries, start period.
pub(super) fn read_timing(
    section: &mut Section<'_, '_, '_>,
    timeout: Duration,
) -> (Duration, Duration, u32, Duration) {
    let interval = section.millis("interval_ms", Duration::from_millis(10_000), false);
    let timeout = section.millis("timeout_ms", timeout, false);
    let retries = u32::try_from(section.count("retries", 3)).unwrap_or(u32::MAX);
    let start_period = section.millis("start_period_ms", Duration::ZERO, true);
    (interval, timeout, retries, start_period)
}

/// hero_proc's `[[actions]]`: `trigger = "check"` is an exec health check.
pub(super) fn read_action(section: &mut Section<'_, '_, '_>) -> Option<HealthCheck> {
    let name = section.string("name").map(|n| n.value);
    let _description = section.string("description");
    let script = section.string("script");
    if script.is_none() {
        section.missing("script");
    }
    let trigger = choice(section, "trigger", &[("check", ())]);
    if trigger.is_none() && section.value("trigger").is_none() {
        section.missing("trigger");
    }
    let timing = read_timing(section, Duration::from_millis(5_000));
    let command = checked_command(section, "script", script?)?;
    trigger?;
    Some(HealthCheck {
        name: name.unwrap_or_else(|| "health".into()),
        probe: Probe::Exec { command },
        interval: timing.0,
        timeout: timing.1,
        retries: timing.2,
        start_period: timing.3,
    })
}

pub(super) fn checked_command(
    section: &Section<'_, '_, '_>,
    field: &str,
    line: Located<String>,
) -> Option<Command> {
    match Command::parse(&line.value) {
        Ok(command) => Some(command),
        Err(reason) => {
            section.ctx().error(
                &line.span,
                ErrorKind::BadCommand {
                    field: field.to_owned(),
                    reason: reason.to_string(),
                },
            );
            None
        }
    }
}

pub(super) fn checked_tcp_target(
    section: &Section<'_, '_, '_>,
    target: Located<String>,
) -> Option<String> {
    let port = target.value.rsplit_once(':').and_then(|(host, port)| {
        (!host.is_empty())
            .then(|| port.parse::<u16>().ok().filter(|p| *p != 0))
            .flatten()
    });
    if port.is_none() {
        section.out_of_range(
            "target",
            &target.span,
            "must be host:port for type = \"tcp\"",
        );
        return None;
    }
    Some(target.value)
}

pub(super) fn checked_http_target(
    section: &Section<'_, '_, '_>,
    target: Located<String>,
) -> Option<String> {
    if target.value.starts_with("https://") {
        section.out_of_range(
            "target",
            &target.span,
            "uses https, which native http checks do not speak; use type = \"exec\" with a client",
        );
        return None;
    }
    if !target.value.starts_with("http://") || target.value.len() <= "http://".len() {
        section.out_of_range(
            "target",
            &target.span,
            "must be an http:// URL for type = \"http\"",
        );
        return None;
    }
    Some(target.value)
}

pub(super) fn checked_status(
    section: &Section<'_, '_, '_>,
    status: Option<Located<u64>>,
) -> Option<u16> {
    let Some(status) = status else {
        return Some(200);
    };
    match u16::try_from(status.value) {
        Ok(code @ 100..=599) => Some(code),
        _ => {
            section.out_of_range(
                "expect_status",
                &status.span,
                "must be an HTTP status from 100 to 599",
            );
            None
        }
    }
}
