//! The code's shape, checked so it stays easy to change: no function in the reconcile
//! path (`src/controller`, `src/plan`, `src/render`) over 80 lines, and no import cycle
//! between the crate's modules. Read from the syntax tree (syn), not by pattern.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::Visit;

const MAX_LINES: usize = 80;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("source dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn parse(path: &Path) -> syn::File {
    let text = std::fs::read_to_string(path).expect("readable source");
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Functions longer than [`MAX_LINES`], outside `#[cfg(test)]` code.
#[derive(Default)]
struct LongFunctions {
    found: Vec<(String, usize)>,
}

/// `#[test]` or `#[cfg(test)]` (also within `all(test, …)`).
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("test")
            || (a.path().is_ident("cfg")
                && a.meta.require_list().is_ok_and(|l| {
                    l.tokens
                        .to_string()
                        .split(|c: char| !c.is_alphanumeric())
                        .any(|w| w == "test")
                }))
    })
}

impl LongFunctions {
    fn check(&mut self, name: &str, span: proc_macro2::Span) {
        let lines = span.end().line - span.start().line + 1;
        if lines > MAX_LINES {
            self.found.push((name.to_string(), lines));
        }
    }
}

impl<'ast> Visit<'ast> for LongFunctions {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test(&f.attrs) {
            self.check(&f.sig.ident.to_string(), f.span());
            syn::visit::visit_item_fn(self, f);
        }
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test(&f.attrs) {
            self.check(&f.sig.ident.to_string(), f.span());
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
}

#[test]
fn no_function_in_the_reconcile_path_is_over_80_lines() {
    let mut long = Vec::new();
    for dir in ["controller", "plan", "render"] {
        for path in rust_files(&src().join(dir)) {
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with("tests.rs"))
            {
                continue;
            }
            let mut visitor = LongFunctions::default();
            visitor.visit_file(&parse(&path));
            let relative = path
                .strip_prefix(src())
                .unwrap_or(&path)
                .display()
                .to_string();
            long.extend(
                visitor
                    .found
                    .into_iter()
                    .map(|(name, lines)| format!("{relative}: {name} ({lines} lines)")),
            );
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_LINES} lines; split them:\n{}",
        long.join("\n")
    );
}

/// The module a file defines, as a path from the crate root (`render::gateway`).
fn module_of(path: &Path) -> Vec<String> {
    let relative = path.strip_prefix(src()).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// Module paths named by the `use` items of a file (outside test code), resolved from
/// `crate::` and `super::` to paths from the crate root.
#[derive(Default)]
struct Uses {
    here: Vec<String>,
    found: BTreeSet<Vec<String>>,
}

impl Uses {
    fn tree(&mut self, prefix: Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                let mut next = prefix;
                next.push(p.ident.to_string());
                self.tree(next, &p.tree);
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.tree(prefix.clone(), t);
                }
            }
            syn::UseTree::Name(n) => {
                let mut path = prefix;
                path.push(n.ident.to_string());
                self.resolve(path);
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix;
                path.push(r.ident.to_string());
                self.resolve(path);
            }
            syn::UseTree::Glob(_) => self.resolve(prefix),
        }
    }

    fn resolve(&mut self, path: Vec<String>) {
        let mut resolved = match path.first().map(String::as_str) {
            Some("crate") => path[1..].to_vec(),
            Some("super") => {
                let mut base = self.here.clone();
                let mut rest = &path[..];
                while rest.first().is_some_and(|p| p == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                base.extend(rest.iter().cloned());
                base
            }
            Some("self") => {
                let mut base = self.here.clone();
                base.extend(path[1..].iter().cloned());
                base
            }
            _ => return,
        };
        resolved.retain(|p| p != "self");
        self.found.insert(resolved);
    }
}

impl<'ast> Visit<'ast> for Uses {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if !is_test(&u.attrs) {
            self.tree(Vec::new(), &u.tree);
        }
    }
}

/// Two sibling modules that import each other (directly or through other siblings)
/// cannot be understood, or changed, one at a time.
#[test]
fn no_import_cycle_between_modules() {
    let files = rust_files(&src());
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    // Edges between siblings: `a::b` uses `a::c::…` gives b → c, at every level.
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let here = module_of(file);
        let mut uses = Uses {
            here: here.clone(),
            ..Uses::default()
        };
        uses.visit_file(&parse(file));
        for used in uses.found {
            // The longest common prefix; the first differing segments are siblings.
            let common = here.iter().zip(&used).take_while(|(a, b)| a == b).count();
            if common >= here.len() || common >= used.len() {
                continue; // a module using its own children, or its ancestors' items
            }
            let from = here[..=common].to_vec();
            let to = used[..=common].to_vec();
            if modules.contains(&to) || modules.iter().any(|m| m.starts_with(&to)) {
                edges.entry(from).or_default().insert(to);
            }
        }
    }
    let mut cycles = Vec::new();
    for start in edges.keys() {
        // Depth-first search for a path back to `start`.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    let names: Vec<String> = path.iter().map(|m| m.join("::")).collect();
                    cycles.push(format!("{} -> {}", names.join(" -> "), start.join("::")));
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    cycles.sort();
    cycles.dedup();
    assert!(
        cycles.is_empty(),
        "modules that import each other:\n{}",
        cycles.join("\n")
    );
}
