//! What a service and the node use, as the kernel counts it: a service's
//! cgroup files (memory, CPU time, processes, I/O, OOM kills) and the
//! node's memory and pressure (PSI). Read when asked (a status call), from
//! kernel pseudo-files that never block on a disk; nothing is sampled.

use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::cgroup::keyed;

/// One service's use of the node, from its cgroup. A figure the kernel
/// does not give (its controller missing, an older kernel) is None.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Memory charged to it now, in bytes (`memory.current`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// The most it was charged since its cgroup was made (`memory.peak`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_peak_bytes: Option<u64>,
    /// Its memory limit in bytes (`memory.max`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_max_bytes: Option<u64>,
    /// CPU time used, in microseconds (`cpu.stat` `usage_usec`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_usec: Option<u64>,
    /// Processes and threads in it (`pids.current`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Its process limit (`pids.max`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<u64>,
    /// Bytes read from block devices (`io.stat` `rbytes`, every device).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_read_bytes: Option<u64>,
    /// Bytes written to block devices (`io.stat` `wbytes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_write_bytes: Option<u64>,
    /// Kills by the OOM killer in it (`memory.events` `oom_kill`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_kills: Option<u64>,
}

/// The usage of the cgroup at `dir`.
pub fn of_cgroup(dir: &Path) -> Usage {
    let read = |file: &str| fs::read_to_string(dir.join(file)).ok();
    let number = |file: &str| read(file)?.trim().parse::<u64>().ok();
    let io = read("io.stat");
    let io_sum = |key: &str| {
        let text = io.as_deref()?;
        Some(
            text.lines()
                .flat_map(str::split_whitespace)
                .filter_map(|field| field.strip_prefix(key)?.strip_prefix('='))
                .filter_map(|n| n.parse::<u64>().ok())
                .sum(),
        )
    };
    Usage {
        memory_bytes: number("memory.current"),
        memory_peak_bytes: number("memory.peak"),
        memory_max_bytes: number("memory.max"),
        cpu_usec: read("cpu.stat").and_then(|text| keyed(&text, "usage_usec")),
        pids: number("pids.current"),
        pids_max: number("pids.max"),
        io_read_bytes: io_sum("rbytes"),
        io_write_bytes: io_sum("wbytes"),
        oom_kills: read("memory.events").and_then(|text| keyed(&text, "oom_kill")),
    }
}

/// The node's memory and pressure, as `node.info` shows them. Absent
/// figures are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeUsage {
    /// RAM in bytes (`/proc/meminfo` `MemTotal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
    /// What could be had without swapping (`MemAvailable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_available_bytes: Option<u64>,
    /// Pressure stall information: the share (percent) of the last 10 s
    /// in which some task waited for each resource.
    #[serde(skip_serializing_if = "Pressure::is_empty")]
    pub pressure_some_avg10: Pressure,
}

/// PSI's `some avg10` per resource, where the kernel gives it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pressure {
    /// Waiting for a CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Waiting for memory (reclaim, swap-in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    /// Waiting for I/O.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io: Option<f64>,
}

impl Pressure {
    fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none() && self.io.is_none()
    }
}

/// The node's memory (from `/proc/meminfo`) and pressure
/// (`/proc/pressure/*`).
pub fn node() -> NodeUsage {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let bytes = |key| meminfo_kib(&meminfo, key).map(|kib| kib * 1024);
    let psi = |resource: &str| {
        fs::read_to_string(format!("/proc/pressure/{resource}"))
            .ok()
            .and_then(|text| some_avg10(&text))
    };
    NodeUsage {
        memory_total_bytes: bytes("MemTotal:"),
        memory_available_bytes: bytes("MemAvailable:"),
        pressure_some_avg10: Pressure {
            cpu: psi("cpu"),
            memory: psi("memory"),
            io: psi("io"),
        },
    }
}

/// A `/proc/meminfo` line's figure in KiB.
fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `avg10` of a PSI file's `some` line (a percentage).
fn some_avg10(text: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with("some "))?
        .split_whitespace()
        .find_map(|field| field.strip_prefix("avg10="))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroups_files_become_its_usage() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| fs::write(dir.path().join(name), text).unwrap();
        write("memory.current", "22020096\n");
        write("memory.peak", "23068672\n");
        write("memory.max", "max\n");
        write(
            "cpu.stat",
            "usage_usec 120000\nuser_usec 100000\nsystem_usec 20000\n",
        );
        write("pids.current", "3\n");
        write("pids.max", "32\n");
        write(
            "io.stat",
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n254:0 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n",
        );
        write(
            "memory.events",
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 1\n",
        );
        let usage = of_cgroup(dir.path());
        assert_eq!(
            usage,
            Usage {
                memory_bytes: Some(22_020_096),
                memory_peak_bytes: Some(23_068_672),
                memory_max_bytes: None,
                cpu_usec: Some(120_000),
                pids: Some(3),
                pids_max: Some(32),
                io_read_bytes: Some(4097),
                io_write_bytes: Some(8194),
                oom_kills: Some(1),
            }
        );
        // Nothing there: nothing said.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(of_cgroup(empty.path()), Usage::default());
        assert_eq!(serde_json::to_string(&Usage::default()).unwrap(), "{}");
    }

    #[test]
    fn the_nodes_memory_and_pressure_are_read_from_proc() {
        let meminfo = "MemTotal:        4028440 kB\nMemFree:  1 kB\nMemAvailable:    3000000 kB\n";
        assert_eq!(meminfo_kib(meminfo, "MemTotal:"), Some(4_028_440));
        assert_eq!(meminfo_kib(meminfo, "MemAvailable:"), Some(3_000_000));
        let psi = "some avg10=1.50 avg60=0.30 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(some_avg10(psi), Some(1.5));
        // On this machine: the total is there whatever the kernel.
        let node = node();
        assert!(node.memory_total_bytes.unwrap() > 0, "{node:?}");
    }
}
