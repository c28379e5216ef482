//! Keeps ARCHITECTURE.md's module table true, as rust-analyzer's tidy tests keep its
//! architecture rules: every `crate::<module>` path under `src/<module>` must name a
//! module that the table's "may depend on" column lists for it, and the table itself
//! must have no cycle. Comments are left out; a path in a doc comment is not an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Table = BTreeMap<String, BTreeSet<String>>;

/// The table's rows: module → the modules it may depend on (backticked names in the
/// last column that are themselves modules of the table).
fn table() -> Table {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .expect("ARCHITECTURE.md");
    let rows: Vec<(String, String)> = doc
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
            let name = cells
                .first()?
                .trim()
                .trim_matches('`')
                .trim_end_matches('/');
            Some((name.to_owned(), cells.last()?.to_string()))
        })
        .collect();
    let names: BTreeSet<String> = rows.iter().map(|(n, _)| n.clone()).collect();
    rows.into_iter()
        .map(|(name, deps)| {
            let allowed = deps
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|d| d.trim_end_matches('/').to_owned())
                .filter(|d| names.contains(d))
                .collect();
            (name, allowed)
        })
        .collect()
}

/// The code's edges: module → (module it names, the file that names it).
fn edges(src: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let first = rel.components().next().expect("a file").as_os_str();
            let module = first.to_string_lossy().trim_end_matches(".rs").to_owned();
            if matches!(module.as_str(), "lib" | "main" | "architecture_tests") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source is readable");
            for line in text.lines().map(|l| l.split("//").next().unwrap_or("")) {
                for (i, _) in line.match_indices("crate::") {
                    let rest = &line[i + "crate::".len()..];
                    let used: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !used.is_empty() && used != module {
                        out.entry(module.clone())
                            .or_default()
                            .entry(used)
                            .or_insert_with(|| rel.display().to_string());
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_module_edge_is_allowed_by_the_architecture_table() {
    let table = table();
    assert!(
        table.len() > 15,
        "the module table was not found in ARCHITECTURE.md"
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (module, used) in edges(&src) {
        let Some(allowed) = table.get(&module) else {
            wrong.push(format!(
                "src/{module} is not in ARCHITECTURE.md's module table"
            ));
            continue;
        };
        for (dep, file) in used {
            if !allowed.contains(&dep) {
                wrong.push(format!(
                    "{module} -> {dep} (src/{file}) is not allowed by the table"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_architecture_table_has_no_cycle() {
    let table = table();
    // Depth-first search for a back edge.
    fn visit<'a>(
        table: &'a Table,
        node: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<String> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            return Some(format!("{} -> {node}", path[at..].join(" -> ")));
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for dep in table.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(table, dep, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in table.keys() {
        if let Some(cycle) = visit(&table, module, &mut Vec::new(), &mut done) {
            panic!("the module table has a cycle: {cycle}");
        }
    }
}
