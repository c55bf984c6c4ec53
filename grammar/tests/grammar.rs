//! Grammar tests: the parser accepts every example and spec snippet, and rejects
//! malformed input at the right place. (Type checking is the compiler's business.)

use anneal_grammar::{AnnealParser, Rule};
use pest::Parser;
use std::path::Path;

fn parses(text: &str) -> bool {
    AnnealParser::parse(Rule::file, text).is_ok()
}

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn accepts_every_example_and_library_file() {
    for dir in ["examples", "stdlib"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "anneal") {
                let text = std::fs::read_to_string(&path).unwrap();
                if let Err(e) = AnnealParser::parse(Rule::file, &text) {
                    panic!("{} does not parse:\n{e}", path.display());
                }
            }
        }
    }
}

#[test]
fn accepts_every_spec_snippet() {
    let mut files = Vec::new();
    for dir in ["spec", "spec/stdlib"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    for path in files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
    {
        let md = std::fs::read_to_string(&path).unwrap();
        let mut block: Option<String> = None;
        for line in md.lines() {
            if block.is_none() && line.trim_start().starts_with("```anneal") {
                block = Some(String::new());
            } else if line.trim_start().starts_with("```") {
                if let Some(b) = block.take() {
                    if let Err(e) = AnnealParser::parse(Rule::file, &b) {
                        panic!("a snippet of {} does not parse:\n{e}\n{b}", path.display());
                    }
                }
            } else if let Some(b) = block.as_mut() {
                b.push_str(line);
                b.push('\n');
            }
        }
    }
}

#[test]
fn literals() {
    for ok in ["1", "100_000", "0.9", "1e-3", "2.5E+2", "1_000.000_1"] {
        assert!(parses(&format!("schedule s() = {ok}")), "{ok}");
    }
    for bad in ["1__0", "1.", ".5", "1e"] {
        assert!(
            !parses(&format!("schedule s() = {bad}")),
            "{bad} should not parse"
        );
    }
}

#[test]
fn keywords_are_not_names_but_may_prefix_them() {
    assert!(!parses("transform state() { grad = grad }"));
    assert!(parses("transform states() { grad = grad }"));
    assert!(parses(
        "schedule s(order: real, notes: real, android: real) = order + notes + android"
    ));
}

#[test]
fn precedence_of_power_and_negation() {
    // -x^2 parses; the compiler tests check that it means -(x^2).
    assert!(parses("schedule s(x: real) = -x ^ 2"));
    assert!(parses("schedule s(x: real) = 2 ^ -x"));
    assert!(
        !parses("schedule s(x: real) = 1 < 2 < 3"),
        "comparisons do not chain"
    );
}

#[test]
fn recipes_and_groups() {
    assert!(parses(
        "recipe r {\n steps 10\n groups {\n a = \"*.bias\", \"*norm*\" except \"x*\"\n b = rest\n }\n update = f(x: {a: 1, b: 2}) |> g()\n}"
    ));
    assert!(!parses("recipe r { groups { a = } }"));
    assert!(!parses("recipe { steps 10 }"));
}

#[test]
fn comments_anywhere() {
    assert!(parses(
        "// a\nimport std.optax.* /* b */ // c\n/* d\n e */ recipe r { } // f"
    ));
}
