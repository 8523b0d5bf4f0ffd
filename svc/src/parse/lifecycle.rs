//! `[dependencies]`, `[lifecycle]` (signals by name or number) and
//! `[logging]`.

use crate::error::ErrorKind;
use crate::section::Section;
use crate::service::{Dependencies, DependencyRef, Lifecycle, Logging, RestartPolicy, SIGNALS};
use crate::suggest::nearest;

use super::values::{choice, is_valid_name, read_path};

/// The most lines one service's ring may keep: at 4 KiB a line at most,
/// 100,000 lines bound one service's memory even when every line is long.
pub const MAX_BUFFER_LINES: u64 = 100_000;

pub(super) fn read_dependencies(section: &mut Section<'_, '_, '_>) -> Dependencies {
    let mut read = |key: &'static str| -> Vec<DependencyRef> {
        let mut refs: Vec<DependencyRef> = Vec::new();
        for entry in section.strings(key) {
            if !is_valid_name(&entry.value) {
                section
                    .ctx()
                    .error(&entry.span, ErrorKind::InvalidName(entry.value));
                continue;
            }
            if refs.iter().any(|r| r.name == entry.value) {
                continue;
            }
            let (line, column) = section.ctx().position(entry.span.start);
            refs.push(DependencyRef {
                name: entry.value,
                line,
                column,
            });
        }
        refs
    };
    let dependencies = Dependencies {
        requires: read("requires"),
        after: read("after"),
        wants: read("wants"),
        conflicts: read("conflicts"),
    };
    for conflict in &dependencies.conflicts {
        if dependencies
            .requires
            .iter()
            .any(|r| r.name == conflict.name)
        {
            section.ctx().error_at(
                conflict.line,
                conflict.column,
                ErrorKind::RequiresConflicts(conflict.name.clone()),
            );
        }
    }
    dependencies
}

pub(super) fn read_lifecycle(section: &mut Section<'_, '_, '_>) -> Lifecycle {
    let defaults = Lifecycle::default();
    let restart = choice(
        section,
        "restart",
        &[
            ("always", RestartPolicy::Always),
            ("on_failure", RestartPolicy::OnFailure),
            ("on-failure", RestartPolicy::OnFailure),
            ("never", RestartPolicy::Never),
        ],
    )
    .unwrap_or(defaults.restart);
    let restart_delay = section.millis("restart_delay_ms", defaults.restart_delay, false);
    let max_value = section.value("restart_delay_max_ms").map(|v| v.span());
    let restart_delay_max =
        section.millis("restart_delay_max_ms", defaults.restart_delay_max, false);
    if restart_delay_max < restart_delay {
        let span = max_value.unwrap_or_else(|| section.span());
        section.out_of_range(
            "restart_delay_max_ms",
            &span,
            &format!(
                "({} ms) must not be less than restart_delay_ms ({} ms)",
                restart_delay_max.as_millis(),
                restart_delay.as_millis()
            ),
        );
    }
    let max_restarts = section
        .unsigned("max_restarts")
        .map_or(Some(defaults.max_restarts), |n| u32::try_from(n.value).ok())
        .unwrap_or(u32::MAX);
    Lifecycle {
        restart,
        restart_delay,
        restart_delay_max,
        max_restarts,
        stability_period: section.millis("stability_period_ms", defaults.stability_period, false),
        start_timeout: section.millis("start_timeout_ms", defaults.start_timeout, false),
        stop_timeout: section.millis("stop_timeout_ms", defaults.stop_timeout, false),
        stop_signal: read_signal(section).unwrap_or(defaults.stop_signal),
    }
}

/// Parses a signal name (`SIGTERM`, `TERM`, any case) or number (1–64).
pub fn signal_number(text: &str) -> Option<i32> {
    let upper = text.trim().to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    SIGNALS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, number)| *number)
        .or_else(|| text.parse::<i32>().ok().filter(|n| (1..=64).contains(n)))
}

pub(super) fn read_signal(section: &mut Section<'_, '_, '_>) -> Option<i32> {
    read_signal_named(section, "stop_signal")
}

pub(super) fn read_signal_named(
    section: &mut Section<'_, '_, '_>,
    key: &'static str,
) -> Option<i32> {
    let value = section.string(key)?;
    let number = signal_number(&value.value);
    if number.is_none() {
        let names: Vec<&'static str> = SIGNALS.iter().map(|(name, _)| *name).collect();
        section.ctx().error(
            &value.span,
            ErrorKind::UnknownValue {
                field: key.into(),
                suggestion: nearest(&value.value.to_ascii_uppercase(), &names).map(str::to_owned),
                value: value.value,
                expected: names,
            },
        );
    }
    number
}

pub(super) fn read_logging(section: &mut Section<'_, '_, '_>) -> Logging {
    let defaults = Logging::default();
    let default_lines = defaults.buffer_lines as u64;
    let buffer_lines = match section.unsigned("buffer_lines") {
        Some(n) if n.value == 0 => {
            section.zero("buffer_lines", &n.span);
            default_lines
        }
        Some(n) if n.value > MAX_BUFFER_LINES => {
            let message = format!("must be at most {MAX_BUFFER_LINES}");
            section.out_of_range("buffer_lines", &n.span, &message);
            default_lines
        }
        Some(n) => n.value,
        None => default_lines,
    };
    Logging {
        buffer_lines: usize::try_from(buffer_lines).unwrap_or(usize::MAX),
        file: read_path(section, "file"),
        forward: section.string("forward").map(|f| f.value),
    }
}
