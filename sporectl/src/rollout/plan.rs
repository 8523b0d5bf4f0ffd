//! A rollout's shape, decided before a node is touched: the batches (the
//! canary first, then at most `--max-parallel` nodes at a time) and when
//! failures stop it. Pure: no network, no clock.

use std::ops::Range;

/// How many nodes a batch after the canary takes: a count, or a share of
/// the fleet (rounded up, at least one node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parallel {
    /// At most this many nodes.
    Nodes(usize),
    /// At most this share of the nodes, in percent (1..=100).
    Percent(u8),
}

impl Parallel {
    /// `--max-parallel`: `5` or `25%`.
    pub fn parse(text: &str) -> Result<Parallel, String> {
        let bad = || format!("`{text}`: expected a number of nodes (5) or a share (25%)");
        match text.strip_suffix('%') {
            Some(share) => match share.trim().parse::<u8>() {
                Ok(p) if (1..=100).contains(&p) => Ok(Parallel::Percent(p)),
                _ => Err(bad()),
            },
            None => match text.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(Parallel::Nodes(n)),
                _ => Err(bad()),
            },
        }
    }

    /// The batch size for a fleet of `total` nodes.
    pub fn size(self, total: usize) -> usize {
        match self {
            Parallel::Nodes(n) => n,
            Parallel::Percent(p) => (total * usize::from(p)).div_ceil(100),
        }
        .max(1)
    }
}

/// One batch: which nodes (indices into the sorted fleet) and whether it
/// is the canary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The nodes, as a range of the sorted fleet.
    pub nodes: Range<usize>,
    /// The first batch of a rollout with `--canary N`.
    pub canary: bool,
}

/// The batches for `total` nodes: `canary` nodes first (when any), then
/// the rest `parallel` at a time, in order.
pub fn batches(total: usize, canary: usize, parallel: Parallel) -> Vec<Batch> {
    let mut out = Vec::new();
    let first = canary.min(total);
    if first > 0 {
        out.push(Batch {
            nodes: 0..first,
            canary: true,
        });
    }
    let size = parallel.size(total);
    let mut start = first;
    while start < total {
        let end = (start + size).min(total);
        out.push(Batch {
            nodes: start..end,
            canary: false,
        });
        start = end;
    }
    out
}

/// Whether `failed` nodes so far stop the rollout under `--max-failures`.
pub fn stops(failed: usize, max_failures: usize) -> bool {
    failed > max_failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_parallel_reads_a_count_or_a_share() {
        assert_eq!(Parallel::parse("5"), Ok(Parallel::Nodes(5)));
        assert_eq!(Parallel::parse("25%"), Ok(Parallel::Percent(25)));
        for bad in ["0", "0%", "101%", "-1", "x", "", "%"] {
            assert!(Parallel::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Parallel::Percent(10).size(1000), 100);
        assert_eq!(Parallel::Percent(10).size(15), 2);
        assert_eq!(Parallel::Percent(1).size(3), 1);
        assert_eq!(Parallel::Nodes(7).size(3), 7);
    }

    #[test]
    fn the_canary_comes_first_then_every_node_once_in_order() {
        let plan = batches(20, 1, Parallel::Nodes(5));
        assert_eq!(plan.len(), 5);
        assert_eq!(
            plan.first(),
            Some(&Batch {
                nodes: 0..1,
                canary: true
            })
        );
        let covered: Vec<usize> = plan.iter().flat_map(|b| b.nodes.clone()).collect();
        assert_eq!(covered, (0..20).collect::<Vec<_>>());
        assert!(plan.iter().skip(1).all(|b| !b.canary && b.nodes.len() <= 5));
        // No canary: batches from the first node; a canary as large as the
        // fleet is the whole rollout.
        assert_eq!(batches(4, 0, Parallel::Nodes(3)).len(), 2);
        assert_eq!(batches(3, 9, Parallel::Nodes(1)).len(), 1);
        assert!(batches(0, 1, Parallel::Nodes(1)).is_empty());
    }

    #[test]
    fn failures_stop_it_only_past_the_allowance() {
        assert!(!stops(0, 0));
        assert!(stops(1, 0));
        assert!(!stops(2, 2));
        assert!(stops(3, 2));
    }
}
