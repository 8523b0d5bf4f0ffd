//! Load-and-plan benchmark: N services with random acyclic dependencies,
//! written as real files, loaded with `load_dir` and planned.
//!
//! Run: `cargo bench -p svc --bench plan`. Prints the median of several runs
//! for 1,000 and 10,000 services side by side and their ratio (10× the
//! services should cost about 10× the time: the pipeline is linear).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::Path;
use std::time::{Duration, Instant};

/// xorshift64*: deterministic, so every run plans the same graphs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn write_services(dir: &Path, n: usize) {
    let mut rng = Rng(0x5eed_0000 + n as u64);
    for i in 0..n {
        let mut deps = [Vec::new(), Vec::new(), Vec::new()];
        if i > 0 {
            for _ in 0..rng.below(4) {
                let dep = rng.below(i as u64);
                deps[rng.below(3) as usize].push(format!("\"s{dep}\""));
            }
        }
        let text = format!(
            "[service]\nname = \"s{i}\"\nexec = \"/bin/sleep {i}\"\n\n[dependencies]\nrequires = [{}]\nafter = [{}]\nwants = [{}]\n\n[lifecycle]\nrestart = \"always\"\n",
            deps[0].join(", "),
            deps[1].join(", "),
            deps[2].join(", ")
        );
        std::fs::write(dir.join(format!("s{i}.toml")), text).unwrap();
    }
}

/// Median (load, plan) times over `runs` runs.
fn measure(dir: &Path, n: usize, runs: usize) -> (Duration, Duration) {
    let mut loads = Vec::new();
    let mut plans = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let report = svc::load_dir(dir).unwrap();
        let loaded = Instant::now();
        let plan = report.plan();
        let planned = Instant::now();
        assert!(report.errors.is_empty());
        assert_eq!(plan.start_order().count(), n);
        loads.push(loaded - started);
        plans.push(planned - loaded);
    }
    loads.sort();
    plans.sort();
    (loads[runs / 2], plans[runs / 2])
}

fn main() {
    let runs = 7;
    let mut results = Vec::new();
    for n in [1_000, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        write_services(dir.path(), n);
        let (load, plan) = measure(dir.path(), n, runs);
        println!(
            "{n:>6} services: load {:>8.1} ms  plan {:>6.2} ms  total {:>8.1} ms  ({:.1} µs/service)",
            load.as_secs_f64() * 1e3,
            plan.as_secs_f64() * 1e3,
            (load + plan).as_secs_f64() * 1e3,
            (load + plan).as_secs_f64() * 1e6 / n as f64
        );
        results.push(load + plan);
    }
    println!(
        "ratio 10,000 / 1,000 services: {:.1}x (10x would be linear)",
        results[1].as_secs_f64() / results[0].as_secs_f64()
    );
}
