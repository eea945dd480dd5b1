//! The SDK's modules read bottom-up: a top-level module uses (`use crate::…`, a `crate::…` path,
//! or the `print!`/`println!` macros of `console`) only modules of lower layers in the table of
//! the crate documentation (`src/lib.rs`, "Layers"), so there are no import cycles. This test
//! reads the sources and checks every such edge against that table.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The layers table of `src/lib.rs`: module name -> layer.
fn layers(lib: &str) -> BTreeMap<String, usize> {
    let mut layers = BTreeMap::new();
    let mut in_table = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with("| layer |") {
            in_table = true;
            continue;
        }
        if !in_table || doc.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = doc.split('|').map(str::trim).collect();
        // "", layer, modules, what they use, ""
        if cells.len() < 4 {
            break;
        }
        let layer: usize = cells[1].parse().expect("a layer number");
        for name in cells[2].split(',') {
            let name = name
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim_matches('`')
                .trim_start_matches("mod@");
            assert!(
                layers.insert(name.to_string(), layer).is_none(),
                "{name} is in the layers table twice"
            );
        }
    }
    assert!(!layers.is_empty(), "no layers table in src/lib.rs");
    layers
}

/// `src` without comments, string literals and character literals.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 3,
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first path segment of every item of a `{…}` use group starting at `group` (just after
/// the `{`).
fn group_heads(group: &str, out: &mut BTreeSet<String>) {
    let mut depth = 0;
    let mut item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && depth == 0 && is_ident(c) => {
                let name: String = group[i..].chars().take_while(|&c| is_ident(c)).collect();
                out.insert(name);
                item_start = false;
            }
            _ => {}
        }
    }
}

/// The SDK modules `code` names: `crate::x…`, `crate::{x, y…}`, and `console` for the print
/// macros.
fn uses(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            group_heads(group, &mut out);
        } else {
            out.insert(rest.chars().take_while(|&c| is_ident(c)).collect());
        }
    }
    for (at, _) in code
        .match_indices("println!")
        .chain(code.match_indices("print!"))
    {
        let before = code[..at].chars().next_back();
        if before.is_none_or(|c| !is_ident(c)) {
            out.insert("console".to_string());
        }
    }
    out
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_use_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let layers = layers(&lib);

    // Every module lib.rs declares is in the table, and nothing else.
    let declared: BTreeSet<String> = code_only(&lib)
        .lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("pub ").unwrap_or(l.trim());
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect();
    let tabled: BTreeSet<String> = layers.keys().cloned().collect();
    assert_eq!(
        declared, tabled,
        "the layers table and lib.rs's modules differ"
    );

    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy();
        let module = top.trim_end_matches(".rs").to_string();
        if module == "lib" {
            continue;
        }
        let code = code_only(&fs::read_to_string(file).unwrap());
        let used = uses(&code);
        edges.entry(module.clone()).or_default().extend(
            used.into_iter()
                .filter(|u| *u != module && layers.contains_key(u)),
        );
    }

    let mut wrong = Vec::new();
    for (module, used) in &edges {
        let layer = layers[module];
        for u in used {
            if layers[u] >= layer {
                wrong.push(format!(
                    "{module} (layer {layer}) uses {u} (layer {})",
                    layers[u]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "modules that use their own layer or one above (fix the code or the table in \
         src/lib.rs):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_parser_sees_groups_paths_and_macros() {
    let code = code_only(
        "use crate::{a, b::{c, d}, e as f};\n\
         // crate::commented\n\
         let s = \"crate::in_a_string\";\n\
         let c = '\"'; crate::g::h(); $crate::i::j!(); println!(\"x\");\n\
         macro_rules! print { () => {} }",
    );
    let got: Vec<String> = uses(&code).into_iter().collect();
    assert_eq!(got, ["a", "b", "console", "e", "g", "i"]);
}
