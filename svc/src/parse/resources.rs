//! `[resources]`: what a service may take of the node, as cgroup v2 limits
//! named as systemd's unit settings are (`memory_max` is `MemoryMax=`), and
//! how the kernel's OOM killer should weigh it (`oom_score_adj`).

use toml::de::DeValue;

use crate::section::Section;
use crate::service::{CpuMax, Limit, Memory, Resources, Rlimit, RlimitResource};

/// The `limit_*` keys, as systemd's `Limit*=`, and whether each counts
/// bytes (and so takes `"8M"` too).
const RLIMITS: &[(&str, RlimitResource, bool)] = &[
    ("limit_nofile", RlimitResource::Nofile, false),
    ("limit_core", RlimitResource::Core, true),
    ("limit_nproc", RlimitResource::Nproc, false),
    ("limit_memlock", RlimitResource::Memlock, true),
    ("limit_stack", RlimitResource::Stack, true),
    ("limit_fsize", RlimitResource::Fsize, true),
];

/// Weights (`cpu_weight`, `io_weight`) run from 1 to 10,000, as cgroup v2
/// takes them (default 100).
const MAX_WEIGHT: u64 = 10_000;

/// Reads `[resources]`; absent, no limit at all. A bad key is reported
/// with its line and left out.
pub(super) fn read_resources(top: &mut Section<'_, '_, '_>) -> Resources {
    let Some(mut table) = top.table("resources") else {
        return Resources::default();
    };
    let resources = Resources {
        memory_max: memory(&mut table, "memory_max"),
        memory_high: memory(&mut table, "memory_high"),
        memory_min: memory(&mut table, "memory_min"),
        cpu_weight: weight(&mut table, "cpu_weight"),
        cpu_max: cpu_max(&mut table),
        pids_max: pids(&mut table),
        io_weight: weight(&mut table, "io_weight"),
        oom_score_adj: oom_score_adj(&mut table),
        rlimits: RLIMITS
            .iter()
            .filter_map(|&(key, resource, bytes)| rlimit(&mut table, key, resource, bytes))
            .collect(),
        delegate: table.flag("delegate"),
    };
    table.finish();
    resources
}

/// A share in percent (`"50%"`, `"12.5%"`) as hundredths of a percent,
/// when it is above 0 and at most `most` percent.
fn percent(text: &str, most: f64) -> Option<u32> {
    let number: f64 = text.strip_suffix('%')?.trim().parse().ok()?;
    (number > 0.0 && number <= most).then(|| (number * 100.0).round() as u32)
}

/// A memory amount: bytes (an integer, or `"512M"`, `"2G"`), a share of
/// the node's memory (`"50%"`), or `"infinity"`.
fn memory(table: &mut Section<'_, '_, '_>, key: &'static str) -> Option<Memory> {
    let value = table.value(key)?;
    let span = value.span();
    let bad = "must be bytes (an integer, or \"512M\", \"2G\": K, M, G, T are powers of 1024), a share of the node's memory (\"50%\"), or \"infinity\"";
    match value.get_ref() {
        DeValue::Integer(_) => table.unsigned(key).map(|n| Memory::Bytes(n.value)),
        DeValue::String(text) if text.as_ref() == "infinity" => Some(Memory::Unlimited),
        DeValue::String(text) if text.ends_with('%') => match percent(text, 100.0) {
            Some(share) => Some(Memory::Percent(share)),
            None => {
                table.out_of_range(key, &span, "a share must be above 0% and at most 100%");
                None
            }
        },
        DeValue::String(text) => match timespan::parse_size(text) {
            Ok(bytes) => Some(Memory::Bytes(bytes)),
            Err(_) => {
                table.out_of_range(key, &span, bad);
                None
            }
        },
        _ => {
            table.out_of_range(key, &span, bad);
            None
        }
    }
}

/// A weight from 1 to [`MAX_WEIGHT`].
fn weight(table: &mut Section<'_, '_, '_>, key: &'static str) -> Option<u32> {
    let n = table.unsigned(key)?;
    match u32::try_from(n.value) {
        Ok(weight) if (1..=MAX_WEIGHT).contains(&n.value) => Some(weight),
        _ => {
            table.out_of_range(
                key,
                &n.span,
                "must be from 1 to 10000 (100 is the default share)",
            );
            None
        }
    }
}

/// `cpu_max`: time on the node's CPUs, in percent of one CPU (`"50%"`,
/// `"200%"` for two), or `"infinity"`.
fn cpu_max(table: &mut Section<'_, '_, '_>) -> Option<CpuMax> {
    let key = "cpu_max";
    let text = table.string(key)?;
    if text.value == "infinity" {
        return Some(CpuMax::Unlimited);
    }
    // 1,024 CPUs at most: a typo, not a machine, beyond that. At least
    // 1%: the kernel's shortest quota is 1 ms of its 100 ms period.
    match percent(&text.value, 102_400.0) {
        Some(share) if share >= 100 => Some(CpuMax::Percent(share)),
        _ => {
            table.out_of_range(
                key,
                &text.span,
                "must be a share of one CPU in percent, at least 1% (\"50%\", \"200%\" for two), or \"infinity\"",
            );
            None
        }
    }
}

/// `pids_max`: processes and threads at once, at least 1, or `"infinity"`.
fn pids(table: &mut Section<'_, '_, '_>) -> Option<Limit> {
    let key = "pids_max";
    let value = table.value(key)?;
    let span = value.span();
    match value.get_ref() {
        DeValue::String(text) if text.as_ref() == "infinity" => Some(Limit::Unlimited),
        DeValue::Integer(_) => match table.unsigned(key) {
            Some(n) if n.value >= 1 => Some(Limit::Count(n.value)),
            Some(n) => {
                table.zero(key, &n.span);
                None
            }
            None => None,
        },
        _ => {
            table.out_of_range(key, &span, "must be a count of at least 1, or \"infinity\"");
            None
        }
    }
}

/// `oom_score_adj`: from -1000 (never chosen by the OOM killer) to 1000
/// (chosen first).
fn oom_score_adj(table: &mut Section<'_, '_, '_>) -> Option<i32> {
    let key = "oom_score_adj";
    let value = table.value(key)?;
    let span = value.span();
    let parsed = match value.get_ref() {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    };
    match parsed.and_then(|n| i32::try_from(n).ok()) {
        Some(n) if (-1000..=1000).contains(&n) => Some(n),
        _ => {
            table.out_of_range(key, &span, "must be an integer from -1000 to 1000");
            None
        }
    }
}

/// A `limit_*` key: a count (or bytes: `"8M"` too, for `bytes`), or
/// `"infinity"`.
fn rlimit(
    table: &mut Section<'_, '_, '_>,
    key: &'static str,
    resource: RlimitResource,
    bytes: bool,
) -> Option<Rlimit> {
    let value = table.value(key)?;
    let span = value.span();
    let bad = if bytes {
        "must be bytes (an integer, or \"8M\"), or \"infinity\""
    } else {
        "must be a count (an integer), or \"infinity\""
    };
    let limit = match value.get_ref() {
        DeValue::Integer(_) => Some(table.unsigned(key)?.value),
        DeValue::String(text) if text.as_ref() == "infinity" => None,
        DeValue::String(text) if bytes => match timespan::parse_size(text) {
            Ok(n) => Some(n),
            Err(_) => {
                table.out_of_range(key, &span, bad);
                return None;
            }
        },
        _ => {
            table.out_of_range(key, &span, bad);
            return None;
        }
    };
    Some(Rlimit {
        resource,
        value: limit,
    })
}
