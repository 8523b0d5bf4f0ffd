//! The dependency graph between services: cycles, start layers, stop layers.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use crate::service::Service;

/// Services as nodes; an edge from a service to each service that must be
/// ready before it (its `requires`, `after` and present `wants`).
#[derive(Debug, Clone)]
pub struct Graph {
    names: Vec<String>,
    /// `before[i]`: the nodes that must come before node `i`.
    before: Vec<Vec<usize>>,
}

/// The order to start and stop services in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Plan {
    /// Layers in start order: everything in a layer may start together once
    /// every earlier layer is ready. Names inside a layer are sorted.
    pub start: Vec<Vec<String>>,
    /// Services that could not be ordered because they sit on or behind a
    /// cycle; empty for a validated set.
    pub unordered: Vec<String>,
}

impl Plan {
    /// The stop order: the start layers reversed, so dependents stop first.
    pub fn stop(&self) -> Vec<Vec<String>> {
        self.start.iter().rev().cloned().collect()
    }

    /// Every ordered service, in start order.
    pub fn start_order(&self) -> impl Iterator<Item = &String> {
        self.start.iter().flatten()
    }
}

impl Graph {
    /// Builds the graph of `services`. References to services not in the set
    /// are left out (absent `wants` are allowed; other absences are load errors).
    pub fn new(services: &[Service]) -> Self {
        let index: HashMap<&str, usize> = services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let before = services
            .iter()
            .map(|service| {
                let mut deps: Vec<usize> = service
                    .dependencies
                    .ordering()
                    .filter_map(|d| index.get(d.name.as_str()).copied())
                    .collect();
                deps.sort_unstable();
                deps.dedup();
                deps
            })
            .collect();
        Self {
            names: services.iter().map(|s| s.name.clone()).collect(),
            before,
        }
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are no services.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn name(&self, node: usize) -> String {
        self.names.get(node).cloned().unwrap_or_default()
    }

    /// Every cycle, one per strongly connected component that has one. Each
    /// lists node indices in dependency order (`a` depends on `b` …) and ends
    /// where it starts; the first node is the component's smallest name. Also
    /// returns every node of each component, since all of them are stuck.
    pub fn cycles(&self) -> Vec<Cycle> {
        let mut cycles: Vec<Cycle> = self
            .strongly_connected()
            .into_iter()
            .filter(|component| match component.as_slice() {
                [single] => self.before.get(*single).is_some_and(|b| b.contains(single)),
                _ => true,
            })
            .filter_map(|component| self.cycle_in(component))
            .collect();
        cycles.sort_by(|a, b| a.path.first().cmp(&b.path.first()));
        cycles
    }

    /// The shortest cycle through the smallest-named node of `component`.
    fn cycle_in(&self, mut component: Vec<usize>) -> Option<Cycle> {
        component.sort_by(|a, b| self.names.get(*a).cmp(&self.names.get(*b)));
        let start = *component.first()?;
        let mut member = vec![false; self.len()];
        for node in &component {
            if let Some(flag) = member.get_mut(*node) {
                *flag = true;
            }
        }
        // Breadth-first from start, inside the component, back to start.
        let mut parent: Vec<Option<usize>> = vec![None; self.len()];
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        while let Some(node) = queue.pop_front() {
            for &next in self.before.get(node).map_or(&[][..], Vec::as_slice) {
                if !member.get(next).copied().unwrap_or(false) {
                    continue;
                }
                if next == start {
                    closing = Some(node);
                    break;
                }
                if parent.get(next).copied().flatten().is_none() {
                    if let Some(slot) = parent.get_mut(next) {
                        *slot = Some(node);
                    }
                    queue.push_back(next);
                }
            }
            if closing.is_some() {
                break;
            }
        }
        let mut path = vec![start];
        let mut node = closing?;
        let mut back = Vec::new();
        while node != start {
            back.push(node);
            node = parent.get(node).copied().flatten()?;
        }
        path.extend(back.into_iter().rev());
        path.push(start);
        Some(Cycle {
            path: path.into_iter().map(|n| self.name(n)).collect(),
            members: component.into_iter().map(|n| self.name(n)).collect(),
        })
    }

    /// Tarjan's algorithm, iterative so 10,000-deep chains cannot overflow
    /// the stack of PID 1.
    fn strongly_connected(&self) -> Vec<Vec<usize>> {
        const UNSEEN: usize = usize::MAX;
        let n = self.len();
        let mut order = vec![UNSEEN; n];
        let mut low = vec![0; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut components = Vec::new();
        let mut counter = 0;
        // (node, next edge to look at)
        let mut work: Vec<(usize, usize)> = Vec::new();
        for root in 0..n {
            if order.get(root) != Some(&UNSEEN) {
                continue;
            }
            work.push((root, 0));
            while let Some((node, edge)) = work.pop() {
                if edge == 0 {
                    set(&mut order, node, counter);
                    set(&mut low, node, counter);
                    counter += 1;
                    stack.push(node);
                    set(&mut on_stack, node, true);
                }
                let edges = self.before.get(node).map_or(&[][..], Vec::as_slice);
                if let Some(&next) = edges.get(edge) {
                    work.push((node, edge + 1));
                    if get(&order, next) == UNSEEN {
                        work.push((next, 0));
                    } else if get(&on_stack, next) {
                        let lowest = get(&low, node).min(get(&order, next));
                        set(&mut low, node, lowest);
                    }
                    continue;
                }
                // All edges done: pass `low` up to the caller, pop a root's component.
                if let Some(&(caller, _)) = work.last() {
                    let lowest = get(&low, caller).min(get(&low, node));
                    set(&mut low, caller, lowest);
                }
                if get(&low, node) == get(&order, node) {
                    let mut component = Vec::new();
                    while let Some(member) = stack.pop() {
                        set(&mut on_stack, member, false);
                        component.push(member);
                        if member == node {
                            break;
                        }
                    }
                    components.push(component);
                }
            }
        }
        components
    }

    /// Start layers by Kahn's algorithm: a node's layer is one more than the
    /// deepest layer among what it needs.
    pub fn plan(&self) -> Plan {
        let n = self.len();
        let mut waiting: Vec<usize> = self.before.iter().map(Vec::len).collect();
        let mut after: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (node, deps) in self.before.iter().enumerate() {
            for &dep in deps {
                if let Some(list) = after.get_mut(dep) {
                    list.push(node);
                }
            }
        }
        let mut layer: Vec<usize> = (0..n).filter(|&i| get(&waiting, i) == 0).collect();
        let mut start = Vec::new();
        let mut placed = 0;
        while !layer.is_empty() {
            let mut next = Vec::new();
            for &node in &layer {
                for &dependent in after.get(node).map_or(&[][..], Vec::as_slice) {
                    if let Some(count) = waiting.get_mut(dependent) {
                        *count -= 1;
                        if *count == 0 {
                            next.push(dependent);
                        }
                    }
                }
            }
            placed += layer.len();
            let mut names: Vec<String> = layer.iter().map(|&i| self.name(i)).collect();
            names.sort_unstable();
            start.push(names);
            layer = next;
        }
        let mut unordered: Vec<String> = if placed == n {
            Vec::new()
        } else {
            (0..n)
                .filter(|&i| get(&waiting, i) > 0)
                .map(|i| self.name(i))
                .collect()
        };
        unordered.sort_unstable();
        Plan { start, unordered }
    }
}

/// A dependency cycle found in the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// Names in dependency order, the first repeated at the end.
    pub path: Vec<String>,
    /// Every service in the same strongly connected component.
    pub members: Vec<String>,
}

fn get<T: Copy + Default>(values: &[T], at: usize) -> T {
    values.get(at).copied().unwrap_or_default()
}

fn set<T>(values: &mut [T], at: usize, value: T) {
    if let Some(slot) = values.get_mut(at) {
        *slot = value;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::parse::parse_service;

    /// A daemon named `name` with the given dependencies, parsed from TOML.
    fn service(name: &str, requires: &[&str], after: &[&str], wants: &[&str]) -> Service {
        let list = |names: &[&str]| {
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let text = format!(
            "[service]\nname = \"{name}\"\nexec = \"/bin/true\"\n[dependencies]\nrequires = [{}]\nafter = [{}]\nwants = [{}]\n",
            list(requires),
            list(after),
            list(wants)
        );
        parse_service(Path::new(&format!("{name}.toml")), &text).unwrap()
    }

    #[test]
    fn chain_plans_one_service_per_layer_and_stops_in_reverse() {
        let services = [
            service("call-home", &["mycelium"], &[], &[]),
            service("install-mycelium", &[], &[], &[]),
            service("mycelium", &["install-mycelium"], &[], &[]),
        ];
        let plan = Graph::new(&services).plan();
        assert_eq!(
            plan.start,
            [
                vec!["install-mycelium"],
                vec!["mycelium"],
                vec!["call-home"]
            ]
        );
        assert_eq!(
            plan.stop(),
            [
                vec!["call-home"],
                vec!["mycelium"],
                vec!["install-mycelium"]
            ]
        );
        assert!(plan.unordered.is_empty());
    }

    #[test]
    fn independent_services_share_a_layer() {
        let services = [
            service("a", &[], &[], &[]),
            service("b", &[], &[], &[]),
            service("c", &["a"], &["b"], &[]),
            service("d", &[], &[], &["a"]),
        ];
        let plan = Graph::new(&services).plan();
        assert_eq!(plan.start, [vec!["a", "b"], vec!["c", "d"]]);
    }

    #[test]
    fn layer_is_one_deeper_than_the_deepest_dependency() {
        let services = [
            service("a", &[], &[], &[]),
            service("b", &["a"], &[], &[]),
            service("c", &["b"], &[], &[]),
            service("d", &["a", "c"], &[], &[]),
        ];
        let plan = Graph::new(&services).plan();
        assert_eq!(plan.start, [vec!["a"], vec!["b"], vec!["c"], vec!["d"]]);
    }

    #[test]
    fn absent_wants_do_not_block_the_plan() {
        let services = [service("a", &[], &[], &["not-here"])];
        assert_eq!(Graph::new(&services).plan().start, [vec!["a"]]);
    }

    #[test]
    fn cycle_error_names_every_service_on_it_in_order() {
        let services = [
            service("a", &["b"], &[], &[]),
            service("b", &[], &["c"], &[]),
            service("c", &[], &[], &["a"]),
            service("d", &["a"], &[], &[]),
        ];
        let graph = Graph::new(&services);
        let cycles = graph.cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].path, ["a", "b", "c", "a"]);
        assert_eq!(cycles[0].members, ["a", "b", "c"]);
        let plan = graph.plan();
        assert!(plan.start.is_empty());
        assert_eq!(plan.unordered, ["a", "b", "c", "d"]);
    }

    #[test]
    fn self_dependency_is_a_cycle_of_one() {
        let services = [service("a", &["a"], &[], &[]), service("b", &[], &[], &[])];
        let cycles = Graph::new(&services).cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].path, ["a", "a"]);
    }

    #[test]
    fn separate_cycles_are_reported_separately() {
        let services = [
            service("a", &["b"], &[], &[]),
            service("b", &["a"], &[], &[]),
            service("x", &["y"], &[], &[]),
            service("y", &["z"], &[], &[]),
            service("z", &["x"], &[], &[]),
        ];
        let cycles = Graph::new(&services).cycles();
        let paths: Vec<_> = cycles.iter().map(|c| c.path.join(" -> ")).collect();
        assert_eq!(paths, ["a -> b -> a", "x -> y -> z -> x"]);
    }

    #[test]
    fn long_chain_does_not_overflow_the_stack() {
        let n = 20_000;
        let services: Vec<Service> = (0..n)
            .map(|i| {
                let dep = format!("s{}", i + 1);
                let deps: Vec<&str> = if i + 1 < n {
                    vec![dep.as_str()]
                } else {
                    vec![]
                };
                service(&format!("s{i}"), &deps, &[], &[])
            })
            .collect();
        let graph = Graph::new(&services);
        assert!(graph.cycles().is_empty());
        assert_eq!(graph.plan().start.len(), n);
    }

    /// A random acyclic graph: service `i` may depend only on services
    /// created before it, then names are shuffled so order gives nothing away.
    fn acyclic_services() -> impl Strategy<Value = Vec<Service>> {
        (1usize..40)
            .prop_flat_map(|n| {
                let edges = proptest::collection::vec((0usize..n, 0usize..n, 0u8..3), 0..n * 3);
                let names = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
                (Just(n), edges, names)
            })
            .prop_map(|(n, edges, names)| {
                let name = |i: usize| format!("svc-{}", names[i]);
                let mut deps: Vec<[Vec<String>; 3]> = vec![Default::default(); n];
                for (a, b, relation) in edges {
                    let (later, earlier) = (a.max(b), a.min(b));
                    if later != earlier {
                        deps[later][relation as usize].push(name(earlier));
                    }
                }
                (0..n)
                    .map(|i| {
                        fn as_refs(v: &[String]) -> Vec<&str> {
                            v.iter().map(String::as_str).collect()
                        }
                        let [requires, after, wants] = &deps[i];
                        service(
                            &name(i),
                            &as_refs(requires),
                            &as_refs(after),
                            &as_refs(wants),
                        )
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn every_service_starts_after_everything_it_orders_after(services in acyclic_services()) {
            let graph = Graph::new(&services);
            prop_assert!(graph.cycles().is_empty());
            let plan = graph.plan();
            prop_assert!(plan.unordered.is_empty());
            let layer_of: HashMap<&str, usize> = plan
                .start
                .iter()
                .enumerate()
                .flat_map(|(n, layer)| layer.iter().map(move |name| (name.as_str(), n)))
                .collect();
            prop_assert_eq!(layer_of.len(), services.len());
            for s in &services {
                for dep in s.dependencies.ordering() {
                    prop_assert!(
                        layer_of[s.name.as_str()] > layer_of[dep.name.as_str()],
                        "{} (layer {}) must start after {} (layer {})",
                        s.name, layer_of[s.name.as_str()], dep.name, layer_of[dep.name.as_str()]
                    );
                }
            }
            // Stop order is exactly the reverse: a dependency stops after
            // everything that needs it.
            let stop = plan.stop();
            let stop_layer_of: HashMap<&str, usize> = stop
                .iter()
                .enumerate()
                .flat_map(|(n, layer)| layer.iter().map(move |name| (name.as_str(), n)))
                .collect();
            for s in &services {
                for dep in s.dependencies.ordering() {
                    prop_assert!(stop_layer_of[s.name.as_str()] < stop_layer_of[dep.name.as_str()]);
                }
            }
        }
    }
}
