//! The top-level modules form layers: no two of them import each other, directly or
//! through others. Read from the source itself (`crate::<module>` paths), so a new
//! import cycle fails the suite the moment it is written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("src entries are readable").path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// The top-level module a file belongs to (`src/proxy/forward.rs` → `proxy`); none for
/// the crate root and the binaries.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "bin")).then(|| name.to_string())
}

/// The top-level modules a file names as `crate::<module>`, outside its tests.
fn imports(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in sources(&src) {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("source is readable");
        let edges = graph.entry(module.clone()).or_default();
        edges.extend(imports(&text).into_iter().filter(|m| *m != module));
    }
    graph
}

/// A path from `to` back to `from` through the graph, if there is one.
fn path_back(
    graph: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if to == from {
        return Some(vec![to.to_string()]);
    }
    if !seen.insert(to.to_string()) {
        return None;
    }
    for next in graph.get(to).into_iter().flatten() {
        if let Some(mut path) = path_back(graph, from, next, seen) {
            path.insert(0, to.to_string());
            return Some(path);
        }
    }
    None
}

/// No top-level module reaches itself through its imports.
#[test]
fn top_level_modules_have_no_import_cycles() {
    let graph = graph();
    assert!(graph.len() > 10, "the modules were found: {graph:?}");
    let mut cycles = Vec::new();
    for (module, edges) in &graph {
        for next in edges {
            if let Some(path) = path_back(&graph, module, next, &mut BTreeSet::new()) {
                cycles.push(format!("{module} -> {}", path.join(" -> ")));
                break;
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// The checker itself sees a cycle when there is one.
#[test]
fn a_cycle_is_seen() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    let path = path_back(&graph, "a", "b", &mut BTreeSet::new());
    assert_eq!(path, Some(vec!["b".to_string(), "a".to_string()]));
    assert_eq!(
        imports("use crate::proxy::x; crate::lifecycle::y();"),
        BTreeSet::from(["lifecycle".to_string(), "proxy".to_string()])
    );
}

/// `unsafe` is denied crate-wide; only `memory` (calls into the allocator) may allow it.
#[test]
fn only_memory_allows_unsafe_code() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowing: Vec<PathBuf> = sources(&src)
        .into_iter()
        .filter(|file| {
            let text = std::fs::read_to_string(file).expect("source is readable");
            text.contains("allow(unsafe_code)")
        })
        .collect();
    assert_eq!(allowing, [src.join("memory.rs")]);
}
