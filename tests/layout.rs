//! The workspace's layout holds: no import circle between the files of a crate, and the
//! core crate free of the CLI's, the agent's and the benchmarks' dependencies.
//!
//! The file graph of each crate is read from its sources: its modules are found by
//! following `mod` declarations from the crate root, and every path that names a module
//! of the crate (`crate::...`, `super::...`, `self::...`, or a child module by name, in a
//! `use` or in code) is an edge from the file it appears in to the file that defines what
//! it names. A `pub use` re-export is looked through: naming `crate::plan::Plan`, which
//! `plan/mod.rs` re-exports from `plan/model.rs`, is an edge to `plan/model.rs`. Test
//! modules (`#[cfg(test)]`) are left out: a test may use what its module's siblings offer.
//!
//! A module's own file and the files of its submodules are one room: the parent declares
//! them, re-exports them and may call into them, and a child may use what the parent
//! defines, so an edge from a module's file down to one of its own submodules' is not
//! counted. A `pub use` is an edge of its own only where the file's code uses the name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Each crate of the workspace: its name and root file.
const CRATES: &[(&str, &str)] = &[
    ("volsec-core", "crates/core/src/lib.rs"),
    ("volsec-grpc", "crates/grpc/src/lib.rs"),
    ("volsec-bench", "benches/src/lib.rs"),
    ("volsec", "src/main.rs"),
];

/// Dependencies the core crate must never have, directly or through another crate.
const NOT_IN_CORE: &[&str] = &["clap", "tokio", "tonic", "plotters", "criterion"];

#[test]
fn no_crate_has_an_import_circle_between_its_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut circles = Vec::new();
    for (name, lib) in CRATES {
        let graph = Graph::of_crate(&root.join(lib));
        assert!(graph.files.len() > 1, "{name}: no modules found from {lib}");
        for circle in graph.circles() {
            circles.push(format!("{name}: {}", graph.describe(&circle, root)));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles between files (break each by moving what both sides need into a \
         file of its own, or by turning one edge around):\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_checker_finds_a_circle_through_re_exports_and_not_in_comments_or_tests() {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "lib.rs",
        "//! x\npub mod a;\nmod b;\nmod c;\n#[cfg(test)]\nmod t;\npub use b::Thing;\n",
    );
    write(
        "a/mod.rs",
        "mod inner;\npub use self::inner::*;\npub fn f() -> crate::Thing { todo!() }\n",
    );
    write(
        "a/inner.rs",
        "pub struct Inner;\nfn g(_: crate::Thing) {}\n",
    );
    // Only the code's own path makes an edge: not the comment, the string, the test module
    // (each would close a second circle, b.rs -> a/mod.rs -> b.rs).
    write(
        "b.rs",
        "pub struct Thing; // crate::a::f\n\
         fn g() { let _ = crate::a::Inner; let _ = \"crate::a::f\"; }\n\
         #[cfg(test)]\nmod tests {\n    use crate::a::f;\n}\n",
    );
    write("t.rs", "use crate::a::f;\n");
    // A parent and its child call each other: one room, no circle.
    write(
        "c/mod.rs",
        "mod d;\npub fn top() {}\nfn call() { d::low() }\n",
    );
    write("c/d.rs", "pub fn low() { super::top() }\n");
    let graph = Graph::of_crate(&dir.path().join("lib.rs"));
    assert_eq!(graph.files.len(), 6, "the test-only t.rs is not read");
    let circles: Vec<String> = graph
        .circles()
        .iter()
        .map(|c| graph.describe(c, dir.path()))
        .collect();
    assert_eq!(
        circles,
        ["a/inner.rs:2 crate::Thing -> b.rs:2 crate::a::Inner -> a/inner.rs"]
    );
}

#[test]
fn the_core_crate_has_no_cli_agent_or_benchmark_dependency() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Direct dependencies, from the manifest (no cargo needed).
    let manifest = std::fs::read_to_string(root.join("crates/core/Cargo.toml")).unwrap();
    for line in manifest.lines() {
        let key = line.split(['=', '.', ' ']).next().unwrap_or("");
        assert!(
            !is_forbidden(key),
            "crates/core/Cargo.toml depends on {key}: {line}"
        );
    }
    // And through other crates: every feature, normal dependencies only.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(root)
        .args([
            "tree",
            "--offline",
            "-p",
            "volsec-core",
            "-e",
            "normal",
            "--all-features",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree --offline -p volsec-core: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains("volsec-core") && crates.len() > 1, "{tree}");
    let bad: Vec<&&str> = crates.iter().filter(|c| is_forbidden(c)).collect();
    assert!(
        bad.is_empty(),
        "volsec-core pulls in {bad:?}; see `cargo tree -p volsec-core -e normal -i CRATE`"
    );
}

/// `clap`, `tokio-stream`, `tonic_health`, ...: a crate of one of [`NOT_IN_CORE`]'s families.
fn is_forbidden(name: &str) -> bool {
    NOT_IN_CORE.iter().any(|f| {
        name.strip_prefix(f)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '_']))
    })
}

// ------------------------------------------------------------------------- the file graph

/// One file of a crate and what it declares and names.
struct File {
    path: PathBuf,
    /// The module path of the file (segments below the crate root).
    module: Vec<String>,
    /// The items defined at the file's top level (and in its inline modules).
    defs: BTreeSet<String>,
    /// `pub use` re-exports: the name and the absolute path it stands for.
    reexports: HashMap<String, Vec<String>>,
    /// `pub use PATH::*`: absolute module paths.
    globs: Vec<Vec<String>>,
    /// Paths named in the file: (the module they are written in, the path, the line).
    refs: Vec<(Vec<String>, Vec<String>, usize)>,
}

struct Graph {
    files: Vec<File>,
    /// Module path (segments below the crate root) to the file that defines the module.
    modules: BTreeMap<Vec<String>, usize>,
    /// Edges between files, each with the first line and path that makes it.
    edges: BTreeMap<(usize, usize), (usize, String)>,
}

impl Graph {
    fn of_crate(root_file: &Path) -> Graph {
        let mut graph = Graph {
            files: Vec::new(),
            modules: BTreeMap::new(),
            edges: BTreeMap::new(),
        };
        let dir = root_file.parent().unwrap().to_path_buf();
        graph.load(root_file.to_path_buf(), Vec::new(), dir);
        graph.link();
        graph
    }

    /// Reads the file of module `module` (children in `child_dir`), then its out-of-line
    /// child modules.
    fn load(&mut self, path: PathBuf, module: Vec<String>, child_dir: PathBuf) {
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let parsed = parse(&lex(&text), &module);
        let index = self.files.len();
        self.modules.insert(module.clone(), index);
        for inline in &parsed.inline_modules {
            self.modules.insert(inline.clone(), index);
        }
        self.files.push(File {
            path,
            module: module.clone(),
            defs: parsed.defs,
            reexports: parsed.reexports,
            globs: parsed.globs,
            refs: parsed.refs,
        });
        for child in parsed.children {
            let flat = child_dir.join(format!("{child}.rs"));
            let (file, grandchildren) = if flat.exists() {
                (flat, child_dir.join(&child))
            } else {
                (
                    child_dir.join(&child).join("mod.rs"),
                    child_dir.join(&child),
                )
            };
            let mut child_module = module.clone();
            child_module.push(child);
            self.load(file, child_module, grandchildren);
        }
    }

    /// Turns every path named in a file into an edge to the file that defines it.
    fn link(&mut self) {
        let mut edges = BTreeMap::new();
        for (from, file) in self.files.iter().enumerate() {
            for (context, path, line) in &file.refs {
                let Some(absolute) = self.absolute(context, path) else {
                    continue;
                };
                match self.resolve(&absolute, 0) {
                    Some(to) if to != from && !self.files[to].module.starts_with(&file.module) => {
                        edges
                            .entry((from, to))
                            .or_insert_with(|| (*line, path.join("::")));
                    }
                    _ => {}
                }
            }
        }
        self.edges = edges;
    }

    /// `path` as written in module `context`, from the crate root; `None` for a path that
    /// does not start in this crate (`std::...`, another crate, a local name).
    fn absolute(&self, context: &[String], path: &[String]) -> Option<Vec<String>> {
        let mut base = context.to_vec();
        let mut rest = path;
        match rest.first().map(String::as_str) {
            Some("crate") => {
                base.clear();
                rest = &rest[1..];
            }
            Some("self") => rest = &rest[1..],
            Some("super") => {
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
            }
            Some(first) => {
                let mut child = base.clone();
                child.push(first.to_string());
                if !self.modules.contains_key(&child) {
                    return None;
                }
            }
            None => return None,
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file that defines what the absolute `path` names, looking through re-exports.
    fn resolve(&self, path: &[String], depth: usize) -> Option<usize> {
        if depth > 32 {
            return None;
        }
        let k = (0..=path.len())
            .rev()
            .find(|k| self.modules.contains_key(&path[..*k]))?;
        let module = self.modules[&path[..k]];
        if k == path.len() {
            return Some(module);
        }
        Some(self.lookup(module, &path[k..], depth).unwrap_or(module))
    }

    /// Where `rest[0]`, named in the file `module`, is defined, through its re-exports.
    fn lookup(&self, module: usize, rest: &[String], depth: usize) -> Option<usize> {
        if depth > 32 {
            return None;
        }
        let file = &self.files[module];
        let name = &rest[0];
        if file.defs.contains(name) {
            return Some(module);
        }
        if let Some(target) = file.reexports.get(name) {
            let mut t = target.clone();
            t.extend(rest[1..].iter().cloned());
            return self.resolve(&t, depth + 1);
        }
        file.globs.iter().find_map(|glob| {
            let inner = *self.modules.get(glob)?;
            (inner != module)
                .then(|| self.lookup(inner, rest, depth + 1))
                .flatten()
        })
    }

    /// The circles: every strongly connected set of more than one file, with a shortest
    /// cycle through it.
    fn circles(&self) -> Vec<Circle> {
        let n = self.files.len();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &(a, b) in self.edges.keys() {
            next[a].push(b);
        }
        let mut out = Vec::new();
        for component in strongly_connected(&next) {
            if component.len() < 2 {
                continue;
            }
            let inside: BTreeSet<usize> = component.iter().copied().collect();
            let start = *inside.iter().next().unwrap();
            out.push(Circle {
                cycle: cycle_through(&next, &inside, start),
                files: inside,
            });
        }
        out
    }

    /// The paths of `files`, relative to `root`.
    fn name(&self, i: usize, root: &Path) -> String {
        let p = &self.files[i].path;
        p.strip_prefix(root).unwrap_or(p).display().to_string()
    }

    /// `a.rs:LINE PATH -> b.rs:LINE PATH -> a.rs`, paths relative to `root`, and the
    /// other files in the circle.
    fn describe(&self, circle: &Circle, root: &Path) -> String {
        let name = |i: usize| self.name(i, root);
        let cycle = &circle.cycle;
        let mut text = String::new();
        for (i, &from) in cycle.iter().enumerate() {
            let to = cycle[(i + 1) % cycle.len()];
            let (line, path) = &self.edges[&(from, to)];
            text.push_str(&format!("{}:{line} {path} -> ", name(from)));
        }
        text.push_str(&name(cycle[0]));
        let others: Vec<String> = circle
            .files
            .iter()
            .filter(|f| !cycle.contains(f))
            .map(|&f| name(f))
            .collect();
        if !others.is_empty() {
            text.push_str(&format!(" (also in the circle: {})", others.join(", ")));
        }
        text
    }
}

/// Files that reach each other through their imports.
struct Circle {
    /// A shortest cycle through the first of them.
    cycle: Vec<usize>,
    files: BTreeSet<usize>,
}

/// Tarjan's strongly connected components.
fn strongly_connected(next: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        next: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State, v: usize) {
        s.index[v] = Some(s.counter);
        s.low[v] = s.counter;
        s.counter += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for i in 0..s.next[v].len() {
            let w = s.next[v][i];
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let n = next.len();
    let mut s = State {
        next,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        counter: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

/// A shortest cycle from `start` back to it, staying inside `inside` (breadth first).
fn cycle_through(next: &[Vec<usize>], inside: &BTreeSet<usize>, start: usize) -> Vec<usize> {
    let mut came_from: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &next[v] {
            if w == start {
                let mut cycle = vec![v];
                let mut at = v;
                while at != start {
                    at = came_from[&at];
                    cycle.push(at);
                }
                cycle.reverse();
                return cycle;
            }
            if inside.contains(&w) && !came_from.contains_key(&w) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    unreachable!("a strongly connected file is on a cycle")
}

// ------------------------------------------------------------------- reading the sources

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

/// The tokens of a Rust file, each with its line; comments, strings and character
/// literals dropped (so a path in a doc comment or a message is no edge).
fn lex(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips a string body from just after its opening quote; `hashes` for raw strings.
    let skip_string = |i: &mut usize, line: &mut usize, hashes: Option<usize>| {
        while *i < chars.len() {
            let c = chars[*i];
            if c == '\n' {
                *line += 1;
            }
            match hashes {
                None if c == '\\' => *i += 1,
                None if c == '"' => {
                    *i += 1;
                    return;
                }
                Some(n)
                    if c == '"'
                        && chars[*i + 1..]
                            .iter()
                            .take(n)
                            .filter(|&&h| h == '#')
                            .count()
                            == n =>
                {
                    *i += 1 + n;
                    return;
                }
                _ => {}
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            '"' => {
                i += 1;
                skip_string(&mut i, &mut line, None);
            }
            '\'' => {
                // A character literal ('a', '\n', '{') or a lifetime ('a, 'static).
                if chars.get(i + 1) == Some(&'\\') {
                    i += 2;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if chars.get(i + 2) == Some(&'\'') {
                    i += 3;
                } else {
                    i += 1;
                }
            }
            c if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                // r"..", r#".."#, br"..", b"..": a string, not an identifier.
                if matches!(word.as_str(), "r" | "br" | "b" | "c" | "cr") {
                    let hashes = chars[i..].iter().take_while(|&&h| h == '#').count();
                    if chars.get(i + hashes) == Some(&'"') {
                        let raw = word.ends_with('r');
                        i += hashes + 1;
                        skip_string(&mut i, &mut line, raw.then_some(hashes));
                        continue;
                    }
                    if word == "b" && chars.get(i) == Some(&'\'') {
                        continue; // b'x': the quote is read as a character literal.
                    }
                }
                out.push((Token::Ident(word), line));
            }
            ':' if chars.get(i + 1) == Some(&':') => {
                out.push((Token::PathSep, line));
                i += 2;
            }
            c if c.is_whitespace() => i += 1,
            c => {
                out.push((Token::Punct(c), line));
                i += 1;
            }
        }
    }
    out
}

/// What one file declares and names.
#[derive(Default)]
struct Parsed {
    /// Out-of-line child modules (`mod x;`), not test-only ones.
    children: Vec<String>,
    /// The module paths of its inline modules (`mod x { ... }`), not test-only ones.
    inline_modules: Vec<Vec<String>>,
    defs: BTreeSet<String>,
    reexports: HashMap<String, Vec<String>>,
    globs: Vec<Vec<String>>,
    refs: Vec<(Vec<String>, Vec<String>, usize)>,
}

/// Reads the declarations, `use` trees and paths of a file of module `module`.
fn parse(tokens: &[(Token, usize)], module: &[String]) -> Parsed {
    let ident = |i: usize| match tokens.get(i) {
        Some((Token::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let punct = |i: usize, c: char| matches!(tokens.get(i), Some((Token::Punct(p), _)) if *p == c);
    let sep = |i: usize| matches!(tokens.get(i), Some((Token::PathSep, _)));

    let mut parsed = Parsed::default();
    let mut reexported = Vec::new();
    // How often each name occurs outside `use` declarations.
    let mut used: HashMap<&str, usize> = HashMap::new();
    // Open braces; for each, the inline module it opens, if any, and whether what is
    // inside is test-only.
    let mut braces: Vec<(Option<String>, bool)> = Vec::new();
    let mut cfg_test = false;
    let mut is_pub = false;
    let mut i = 0;
    while i < tokens.len() {
        let in_test = braces.iter().any(|(_, test)| *test);
        let context: Vec<String> = module
            .iter()
            .cloned()
            .chain(braces.iter().filter_map(|(name, _)| name.clone()))
            .collect();
        let at_module_level = braces.iter().all(|(name, _)| name.is_some());
        let line = tokens[i].1;
        // Attributes: `#[...]`, `#![...]`; remember a `cfg(test)`.
        if punct(i, '#') {
            let mut j = i + 1;
            if punct(j, '!') {
                j += 1;
            }
            if punct(j, '[') {
                let mut depth = 0;
                let mut words = Vec::new();
                while j < tokens.len() {
                    match &tokens[j].0 {
                        Token::Punct('[') => depth += 1,
                        Token::Punct(']') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        Token::Ident(w) => words.push(w.as_str()),
                        _ => {}
                    }
                    j += 1;
                }
                if words.first() == Some(&"cfg")
                    && words.contains(&"test")
                    && !words.contains(&"not")
                {
                    cfg_test = true;
                }
                i = j + 1;
                continue;
            }
        }
        match &tokens[i].0 {
            Token::Ident(w) if w == "pub" => {
                is_pub = true;
                i += 1;
                if punct(i, '(') {
                    while i < tokens.len() && !punct(i, ')') {
                        i += 1;
                    }
                    i += 1;
                }
                continue;
            }
            Token::Ident(w) if w == "mod" && ident(i + 1).is_some() => {
                let name = ident(i + 1).unwrap().to_string();
                let test = cfg_test || in_test;
                if punct(i + 2, ';') {
                    if !test {
                        parsed.children.push(name);
                    }
                    i += 3;
                } else if punct(i + 2, '{') {
                    if !test {
                        let mut path = context.clone();
                        path.push(name.clone());
                        parsed.inline_modules.push(path);
                    }
                    braces.push((Some(name), test));
                    i += 3;
                } else {
                    i += 1;
                }
                cfg_test = false;
                is_pub = false;
                continue;
            }
            Token::Ident(w) if w == "use" => {
                let end = (i..tokens.len())
                    .find(|&j| punct(j, ';'))
                    .unwrap_or(tokens.len());
                if !in_test && !cfg_test {
                    let mut trees = Vec::new();
                    use_tree(&tokens[i + 1..end], &[], &mut trees);
                    for (path, alias) in trees {
                        if is_pub && alias.as_deref() != Some("_") {
                            // A re-export is looked through, and is an edge of its own only
                            // where the file's code uses the name too.
                            reexported.push((context.clone(), path.clone(), line, alias.clone()));
                            let absolute = absolute_in(&context, &path);
                            match (alias.as_deref(), absolute) {
                                (Some("*"), Some(a)) => parsed.globs.push(a),
                                (Some(alias), Some(a)) => {
                                    parsed.reexports.insert(alias.to_string(), a);
                                }
                                _ => {}
                            }
                            continue;
                        }
                        parsed.refs.push((context.clone(), path, line));
                    }
                }
                cfg_test = false;
                is_pub = false;
                i = end + 1;
                continue;
            }
            Token::Ident(w)
                if at_module_level
                    && !in_test
                    && !cfg_test
                    && matches!(
                        w.as_str(),
                        "fn" | "struct" | "enum" | "trait" | "type" | "const" | "static" | "union"
                    ) =>
            {
                if let Some(name) = ident(i + 1).filter(|n| *n != "fn" && *n != "mut") {
                    parsed.defs.insert(name.to_string());
                } else if ident(i + 1) == Some("mut") {
                    if let Some(name) = ident(i + 2) {
                        parsed.defs.insert(name.to_string());
                    }
                }
            }
            Token::Ident(w) if w == "macro_rules" && punct(i + 1, '!') => {
                if let Some(name) = ident(i + 2) {
                    parsed.defs.insert(name.to_string());
                }
            }
            Token::Ident(_) if !in_test && !cfg_test && !sep(i.wrapping_sub(1)) && sep(i + 1) => {
                let mut path = Vec::new();
                let mut j = i;
                while let Some(seg) = ident(j) {
                    path.push(seg.to_string());
                    if !sep(j + 1) {
                        break;
                    }
                    j += 2;
                }
                *used.entry(ident(i).unwrap()).or_default() += 1;
                if path.len() > 1 {
                    parsed.refs.push((context.clone(), path, line));
                }
                i = j + 1;
                continue;
            }
            Token::Ident(w) if !in_test => *used.entry(w.as_str()).or_default() += 1,
            // A `#[cfg(test)]` item's body is left out like a test module.
            Token::Punct('{') => braces.push((None, std::mem::take(&mut cfg_test))),
            Token::Punct('}') => {
                braces.pop();
            }
            _ => {}
        }
        // An attribute applies up to the end of the next item's head; `pub` to the next word.
        if matches!(tokens[i].0, Token::Punct(';' | '}')) {
            cfg_test = false;
        }
        is_pub = false;
        i += 1;
    }
    for (context, path, line, alias) in reexported {
        if alias.is_some_and(|a| used.contains_key(a.as_str())) {
            parsed.refs.push((context, path, line));
        }
    }
    parsed
}

/// Makes `path` absolute for a re-export in `context` (only paths into this crate).
fn absolute_in(context: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut base = context.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str)? {
        "crate" => {
            base.clear();
            rest = &rest[1..];
        }
        "self" => rest = &rest[1..],
        "super" => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        // A child module (`pub use model::Plan`), or another crate: the resolver finds
        // nothing for the latter.
        _ => {}
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Expands a `use` tree (the tokens after `use`) into its paths, each with its alias:
/// `Some("*")` for a glob, the name it is known by otherwise (`as X`, or the last
/// segment).
fn use_tree(
    tokens: &[(Token, usize)],
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].0 {
            Token::Ident(w) if w == "as" => {
                if let Some((Token::Ident(alias), _)) = tokens.get(i + 1) {
                    out.push((path.clone(), Some(alias.clone())));
                }
                return;
            }
            Token::Ident(w) => path.push(w.clone()),
            Token::PathSep => {}
            Token::Punct('*') => {
                out.push((path, Some("*".into())));
                return;
            }
            Token::Punct('{') => {
                // Split the group at its top-level commas.
                let mut depth = 0;
                let mut start = i + 1;
                for j in i + 1..tokens.len() {
                    match tokens[j].0 {
                        Token::Punct('{') => depth += 1,
                        Token::Punct('}') if depth == 0 => {
                            use_tree(&tokens[start..j], &path, out);
                            return;
                        }
                        Token::Punct('}') => depth -= 1,
                        Token::Punct(',') if depth == 0 => {
                            use_tree(&tokens[start..j], &path, out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
                return;
            }
            _ => {}
        }
        i += 1;
    }
    if path.len() > prefix.len() {
        // `self` in a group names the module itself.
        if path.last().map(String::as_str) == Some("self") {
            path.pop();
        }
        let name = path.last().cloned();
        out.push((path, name));
    }
}
