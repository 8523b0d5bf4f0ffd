//! A service's `[resources]` as the cgroup v2 files that carry them. Every
//! file spore manages is written at every start, to the value the service
//! file gives or to the kernel's default, so a limit taken out of a file
//! is gone at the next start.

use svc::service::{CpuMax, Limit, Memory, Resources};

/// `cpu.max`'s period, in microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// One file of a service's cgroup, and what goes in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The service file's key (`memory_max`); how errors name it.
    pub key: &'static str,
    /// The cgroup file (`memory.max`).
    pub file: &'static str,
    /// What is written.
    pub value: String,
    /// Set by the service file: a kernel without the file (its controller
    /// missing) fails the start. A default is skipped there instead.
    pub asked: bool,
    /// What a cgroup the kernel just made holds already: not written to a
    /// fresh one (each write costs; at 1,000 services it shows).
    pub kernel_default: bool,
}

/// The settings worth writing: all of them to a cgroup that existed (a
/// restart: a limit taken out of the file must go), only those that
/// differ from the kernel's defaults to a `fresh` one.
pub fn to_write(settings: Vec<Setting>, fresh: bool) -> Vec<Setting> {
    settings
        .into_iter()
        .filter(|s| !fresh || !s.kernel_default)
        .collect()
}

/// The settings for `resources` on a node with `node_memory` bytes of RAM
/// (what `"50%"` is a share of).
pub fn settings(resources: &Resources, node_memory: u64) -> Vec<Setting> {
    let memory = |value: Option<Memory>, unset: &str| match value {
        Some(Memory::Bytes(bytes)) => bytes.to_string(),
        Some(Memory::Percent(hundredths)) => {
            (u128::from(node_memory) * u128::from(hundredths) / 10_000).to_string()
        }
        Some(Memory::Unlimited) => "max".to_owned(),
        None => unset.to_owned(),
    };
    let count = |value: Option<Limit>| match value {
        Some(Limit::Count(n)) => n.to_string(),
        Some(Limit::Unlimited) | None => "max".to_owned(),
    };
    let cpu_max = match resources.cpu_max {
        // Hundredths of a percent of one CPU: 10,000 is the whole period.
        Some(CpuMax::Percent(hundredths)) => format!(
            "{} {CPU_PERIOD_US}",
            u64::from(hundredths) * CPU_PERIOD_US / 10_000
        ),
        Some(CpuMax::Unlimited) | None => format!("max {CPU_PERIOD_US}"),
    };
    let r = resources;
    vec![
        setting(
            "memory_max",
            "memory.max",
            memory(r.memory_max, "max"),
            r.memory_max.is_some(),
        ),
        setting(
            "memory_high",
            "memory.high",
            memory(r.memory_high, "max"),
            r.memory_high.is_some(),
        ),
        setting(
            "memory_min",
            "memory.min",
            memory(r.memory_min, "0"),
            r.memory_min.is_some(),
        ),
        // An OOM kill takes the whole service, which then fails as one
        // (systemd's OOMPolicy=stop does the same by stopping the unit).
        Setting {
            key: "memory_max",
            file: "memory.oom.group",
            value: "1".to_owned(),
            asked: false,
            kernel_default: false,
        },
        setting(
            "cpu_weight",
            "cpu.weight",
            r.cpu_weight.unwrap_or(100).to_string(),
            r.cpu_weight.is_some(),
        ),
        setting("cpu_max", "cpu.max", cpu_max, r.cpu_max.is_some()),
        setting(
            "pids_max",
            "pids.max",
            count(r.pids_max),
            r.pids_max.is_some(),
        ),
        setting(
            "io_weight",
            "io.weight",
            format!("default {}", r.io_weight.unwrap_or(100)),
            r.io_weight.is_some(),
        ),
    ]
}

/// A setting: what the file asked for, or (not `asked`) the kernel's
/// default.
fn setting(key: &'static str, file: &'static str, value: String, asked: bool) -> Setting {
    Setting {
        key,
        file,
        value,
        asked,
        kernel_default: !asked,
    }
}

/// The first limit `resources` sets that needs a cgroup (`oom_score_adj`
/// and the rlimits do not), to name when spore has none.
pub fn first_cgroup_limit(resources: &Resources) -> Option<&'static str> {
    if resources.delegate {
        return Some("delegate");
    }
    settings(resources, 0)
        .into_iter()
        .find(|s| s.asked)
        .map(|s| s.key)
}

/// The node's RAM in bytes (sysinfo(2)); 0 when it cannot be read.
pub fn node_memory() -> u64 {
    nix::sys::sysinfo::sysinfo()
        .map(|info| info.ram_total())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(settings: &[Setting], file: &str) -> (String, bool) {
        let s = settings.iter().find(|s| s.file == file).unwrap();
        (s.value.clone(), s.asked)
    }

    #[test]
    fn limits_become_the_cgroup_files_values() {
        let resources = Resources {
            memory_max: Some(Memory::Bytes(512 << 20)),
            memory_high: Some(Memory::Percent(2_500)),
            memory_min: Some(Memory::Unlimited),
            cpu_weight: Some(50),
            cpu_max: Some(CpuMax::Percent(15_000)),
            pids_max: Some(Limit::Count(32)),
            io_weight: Some(200),
            oom_score_adj: Some(-900),
            rlimits: Vec::new(),
            delegate: false,
        };
        let s = settings(&resources, 4 << 30);
        assert_eq!(value_of(&s, "memory.max"), ("536870912".into(), true));
        assert_eq!(value_of(&s, "memory.high"), ("1073741824".into(), true));
        assert_eq!(value_of(&s, "memory.min"), ("max".into(), true));
        assert_eq!(value_of(&s, "memory.oom.group"), ("1".into(), false));
        assert_eq!(value_of(&s, "cpu.weight"), ("50".into(), true));
        assert_eq!(value_of(&s, "cpu.max"), ("150000 100000".into(), true));
        assert_eq!(value_of(&s, "pids.max"), ("32".into(), true));
        assert_eq!(value_of(&s, "io.weight"), ("default 200".into(), true));
        assert_eq!(first_cgroup_limit(&resources), Some("memory_max"));
    }

    #[test]
    fn unset_limits_reset_to_the_kernels_defaults_and_need_no_controller() {
        let s = settings(&Resources::default(), 1 << 30);
        for (file, value) in [
            ("memory.max", "max"),
            ("memory.high", "max"),
            ("memory.min", "0"),
            ("cpu.weight", "100"),
            ("cpu.max", "max 100000"),
            ("pids.max", "max"),
            ("io.weight", "default 100"),
        ] {
            assert_eq!(value_of(&s, file), (value.into(), false), "{file}");
        }
        // A fresh cgroup needs only what differs from the kernel's.
        let fresh: Vec<&str> = to_write(s.clone(), true).iter().map(|s| s.file).collect();
        assert_eq!(fresh, ["memory.oom.group"]);
        assert_eq!(to_write(s, false).len(), 8);
        let only_score = Resources {
            oom_score_adj: Some(500),
            ..Resources::default()
        };
        assert_eq!(first_cgroup_limit(&only_score), None);
        let delegated = Resources {
            delegate: true,
            ..Resources::default()
        };
        assert_eq!(first_cgroup_limit(&delegated), Some("delegate"));
    }
}
