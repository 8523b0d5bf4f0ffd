//! `service.tree [NAME]`: the dependency graph as it stands, each service
//! with its state and under it what it `requires`, `wants` and is ordered
//! `after`, as `systemctl list-dependencies` shows it. Without a name the
//! roots are the services nothing else depends on. A service met again on
//! another branch is shown once more without its dependencies (`"again":
//! true`); depth and size are bounded, so any graph answers in one frame.

use std::collections::HashSet;

use serde_json::{json, Value};

/// How deep the tree goes.
const MAX_DEPTH: usize = 16;

/// How many entries one answer holds at most (the rest are counted).
const MAX_ENTRIES: usize = 4_000;

struct Walk<'a> {
    runtime: &'a runtime::Runtime,
    now: std::time::Instant,
    entries: usize,
    left_out: usize,
    shown: HashSet<String>,
}

impl Walk<'_> {
    fn entry(&mut self, name: &str, relation: &str, depth: usize) -> Option<Value> {
        if self.entries >= MAX_ENTRIES {
            self.left_out += 1;
            return None;
        }
        self.entries += 1;
        let Some(view) = self.runtime.get(name) else {
            return Some(json!({ "name": name, "relation": relation, "state": "unknown" }));
        };
        let mut entry = json!({
            "name": name,
            "relation": relation,
            "state": view.state.word(),
            "detail": view.state.describe(self.now),
        });
        let again = !self.shown.insert(name.to_owned());
        if again || depth >= MAX_DEPTH {
            if let Value::Object(map) = &mut entry {
                map.insert("again".into(), json!(again));
            }
            return Some(entry);
        }
        let deps = &view.service.dependencies;
        let mut children = Vec::new();
        for (relation, refs) in [
            ("requires", &deps.requires),
            ("wants", &deps.wants),
            ("after", &deps.after),
        ] {
            for dependency in refs {
                // `requires` implies `after`: list it once.
                if relation == "after"
                    && (deps.requires.iter().chain(&deps.wants)).any(|r| r.name == dependency.name)
                {
                    continue;
                }
                if let Some(child) = self.entry(&dependency.name, relation, depth + 1) {
                    children.push(child);
                }
            }
        }
        if let Value::Object(map) = &mut entry {
            map.insert("dependencies".into(), Value::Array(children));
        }
        Some(entry)
    }
}

/// The tree under `name` (which exists), or the whole graph from its roots.
pub fn tree(runtime: &runtime::Runtime, name: Option<&str>) -> Value {
    let mut walk = Walk {
        runtime,
        now: runtime.now(),
        entries: 0,
        left_out: 0,
        shown: HashSet::new(),
    };
    let roots: Vec<String> = match name {
        Some(name) => vec![name.to_owned()],
        None => {
            let services = runtime.supervisor().services();
            let depended: HashSet<&str> = services
                .iter()
                .flat_map(|s| {
                    let d = &s.dependencies;
                    d.requires.iter().chain(&d.wants).chain(&d.after)
                })
                .map(|r| r.name.as_str())
                .collect();
            let mut roots: Vec<String> = services
                .iter()
                .map(|s| s.name.clone())
                .filter(|n| !depended.contains(n.as_str()))
                .collect();
            roots.sort();
            roots
        }
    };
    let entries: Vec<Value> = roots
        .iter()
        .filter_map(|root| walk.entry(root, "root", 0))
        .collect();
    json!({ "tree": entries, "omitted": walk.left_out })
}
