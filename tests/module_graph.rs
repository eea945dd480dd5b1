//! No import cycles between the top-level modules of each crate: every crate reads bottom-up.
//!
//! For each crate, each top-level module (a file or a directory under `src/`) gets an edge to
//! every other top-level module its code (not its comments) names through `crate::…` (including inside
//! `use crate::{…}` groups) or through `super::` paths that climb to the crate root. Unit-test
//! modules (`#[cfg(test)] mod tests { … }` at the end of a file) are left out. The test fails
//! with the cycle it found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose module graphs must be acyclic, relative to the workspace root.
const CRATES: &[&str] = &[
    "abi/src",
    "hypervisor/src",
    "pv-drivers/src",
    "guest-sdk/src",
];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// How deep the module of `file` sits below the crate root (`src/a.rs` and `src/a/mod.rs`: 1).
fn depth(src: &Path, file: &Path) -> usize {
    let rel = file.strip_prefix(src).unwrap();
    let parts = rel.components().count();
    let stem = file.file_stem().unwrap();
    if stem == "mod" { parts - 1 } else { parts }
}

/// The identifiers a path group names first: `a::X, b, c::{D, E}` gives `a`, `b`, `c`.
fn group_heads(group: &str) -> Vec<String> {
    let (mut heads, mut level, mut item) = (Vec::new(), 0, String::new());
    for ch in group.chars().chain([',']) {
        match ch {
            '{' => level += 1,
            '}' => level -= 1,
            ',' if level == 0 => {
                let head: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !head.is_empty() {
                    heads.push(head);
                }
                item.clear();
                continue;
            }
            _ => {}
        }
        if level == 0 {
            item.push(ch);
        }
    }
    heads
}

/// The top-level modules `code` (from a module `depth` levels down) names.
fn named_modules(code: &str, depth: usize) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut prefixes = vec!["crate::".to_owned()];
    if depth >= 1 {
        prefixes.push("super::".repeat(depth));
    }
    for prefix in &prefixes {
        let mut rest = code;
        while let Some(at) = rest.find(prefix.as_str()) {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let mut level = 1;
                let end = group
                    .char_indices()
                    .find(|&(_, c)| {
                        level += match c {
                            '{' => 1,
                            '}' => -1,
                            _ => 0,
                        };
                        level == 0
                    })
                    .map_or(group.len(), |(i, _)| i);
                names.extend(group_heads(&group[..end]));
            } else {
                let head: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.insert(head);
            }
        }
    }
    names
}

fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let top = |file: &Path| -> Option<String> {
        let first = file.strip_prefix(src).unwrap().components().next()?;
        let name = first
            .as_os_str()
            .to_str()?
            .trim_end_matches(".rs")
            .to_owned();
        (name != "lib" && name != "main").then_some(name)
    };
    for file in &files {
        if let Some(name) = top(file) {
            graph.entry(name).or_default();
        }
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for file in &files {
        let Some(name) = top(file) else { continue };
        let code = std::fs::read_to_string(file).unwrap();
        let code = match code.find("#[cfg(test)]\nmod tests {") {
            Some(at) => &code[..at],
            None => &code,
        };
        // Comments (doc links included) name modules without depending on them.
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let deps = named_modules(&code, depth(src, file));
        let edges = graph.get_mut(&name).unwrap();
        edges.extend(
            deps.into_iter()
                .filter(|d| *d != name && modules.contains(d)),
        );
    }
    graph
}

/// A cycle in `graph`, if there is one, as the path around it.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in &graph[node] {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(graph, next, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node.as_str())
            && let Some(c) = visit(graph, node, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_crate_has_an_import_cycle_between_its_top_level_modules() {
    let root = parapet_tests::workspace_root();
    for krate in CRATES {
        let graph = module_graph(&root.join(krate));
        assert!(graph.len() > 1, "{krate}: no modules found");
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{krate}: import cycle {}\n(each module must only use modules below it; move the \
                 item to where its users are)",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_checker_sees_edges_through_groups_and_super_paths() {
    let code = "use crate::{a::X, b, c::{D, E}};\nfn f() { crate::d::g(); super::super::e::h(); }";
    let names = named_modules(code, 2);
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["a", "b", "c", "d", "e"]
    );
    let mut graph = Graph::new();
    graph.insert("x".into(), ["y".into()].into());
    graph.insert("y".into(), ["z".into()].into());
    graph.insert("z".into(), ["x".into()].into());
    assert_eq!(find_cycle(&graph).unwrap(), ["x", "y", "z", "x"]);
    graph.get_mut("z").unwrap().clear();
    assert_eq!(find_cycle(&graph), None);
}
