//! spore's own share of the boot, step by step: each step's time from the
//! end of the one before, said once on the console when supervision begins
//! (`spore: boot: modules 120 ms, network 40 ms, …`) and kept for
//! `node.info` (`boot.steps`), so every boot reports its own figures.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The steps so far, with when the count began.
#[derive(Debug, Clone)]
pub struct Timeline {
    began: Instant,
    last: Instant,
    /// Seconds from the kernel's start to spore's (CLOCK_BOOTTIME).
    kernel_to_spore: Option<Duration>,
    steps: Vec<(&'static str, Duration)>,
}

impl Timeline {
    /// Starts counting now.
    pub fn begin() -> Self {
        let now = Instant::now();
        let kernel_to_spore = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .ok()
            .map(Duration::from);
        Self {
            began: now,
            last: now,
            kernel_to_spore,
            steps: Vec::new(),
        }
    }

    /// The step `name` ended now.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.steps
            .push((name, now.saturating_duration_since(self.last)));
        self.last = now;
    }

    /// All of spore's own steps.
    pub fn total(&self) -> Duration {
        self.last.saturating_duration_since(self.began)
    }

    /// The console line: each step in milliseconds, then the sum.
    pub fn line(&self) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|(name, took)| format!("{name} {} ms", took.as_millis()))
            .collect();
        let kernel = self
            .kernel_to_spore
            .map(|d| format!(" (spore started {:.3} s after the kernel)", d.as_secs_f64()))
            .unwrap_or_default();
        format!(
            "boot: {}; {} ms in all until supervision{kernel}",
            steps.join(", "),
            self.total().as_millis()
        )
    }

    /// For `node.info`: the steps in order, the sum, and the kernel's share.
    pub fn json(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|(name, took)| json!({ "step": name, "ms": took.as_millis() as u64 }))
            .collect();
        json!({
            "steps": steps,
            "spore_ms": self.total().as_millis() as u64,
            "kernel_to_spore_ms": self.kernel_to_spore.map(|d| d.as_millis() as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_counts_from_the_one_before_and_they_sum_to_the_whole() {
        let mut timeline = Timeline::begin();
        std::thread::sleep(Duration::from_millis(20));
        timeline.mark("modules");
        std::thread::sleep(Duration::from_millis(10));
        timeline.mark("network");
        let sum: Duration = timeline.steps.iter().map(|(_, d)| *d).sum();
        assert_eq!(sum, timeline.total());
        assert!(timeline.steps[0].1 >= Duration::from_millis(20));
        assert!(timeline.steps[1].1 >= Duration::from_millis(10));
        let line = timeline.line();
        assert!(line.starts_with("boot: modules "), "{line}");
        assert!(line.contains(" ms, network "), "{line}");
        assert!(line.contains("ms in all until supervision"), "{line}");
        let json = timeline.json();
        assert_eq!(json["steps"][1]["step"], "network");
        assert_eq!(
            json["spore_ms"].as_u64(),
            Some(timeline.total().as_millis() as u64)
        );
    }
}
