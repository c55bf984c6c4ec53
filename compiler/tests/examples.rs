//! Every recipe the project shows a user compiles: the files in `examples/` and every
//! ` ```anneal ` block of `spec/`. Errors fail the test; so do warnings, since an example
//! should be clean.

use anneal_compiler::{compile, diagnostic};
use std::path::Path;

fn assert_clean(name: &str, text: &str) {
    let c = compile(name, text);
    assert!(
        c.diagnostics.is_empty(),
        "{name} does not compile cleanly:\n{}",
        diagnostic::render(&c.diagnostics, &c.sources, false)
    );
}

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn every_example_compiles() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "anneal") {
            assert_clean(
                &path.display().to_string(),
                &std::fs::read_to_string(&path).unwrap(),
            );
            n += 1;
        }
    }
    assert!(n >= 4, "expected the example recipes, found {n}");
}

/// The ```anneal blocks of a markdown file.
fn blocks(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```anneal") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => out.push(current.take().unwrap()),
            (Some(buf), _) => {
                buf.push_str(line);
                buf.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_spec_snippet_compiles() {
    let mut n = 0;
    let mut files = Vec::new();
    for dir in ["spec", "spec/stdlib"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    for path in files {
        if path.extension().is_some_and(|e| e == "md") {
            for (i, b) in blocks(&std::fs::read_to_string(&path).unwrap())
                .iter()
                .enumerate()
            {
                assert_clean(&format!("{}#{i}", path.display()), b);
                n += 1;
            }
        }
    }
    for readme in ["README.md"] {
        if let Ok(md) = std::fs::read_to_string(root().join(readme)) {
            for (i, b) in blocks(&md).iter().enumerate() {
                assert_clean(&format!("{readme}#{i}"), b);
                n += 1;
            }
        }
    }
    assert!(n >= 6, "expected spec snippets, found {n}");
}

#[test]
fn the_standard_library_compiles_cleanly() {
    assert_clean("<empty>", "");
}
