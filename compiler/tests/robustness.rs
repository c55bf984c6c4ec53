//! No input makes the front end panic: random bytes, random token soup, and mutations of
//! real recipes all come back as diagnostics.

use anneal_compiler::compile;
use proptest::prelude::*;

const TOKENS: &[&str] = &[
    "import",
    "std.optax.*",
    "std.torch.{SGD}",
    "recipe",
    "r",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "transform",
    "optimizer",
    "schedule",
    "state",
    "let",
    "grad",
    "param",
    "step",
    "count",
    "=",
    "-=",
    "+",
    "-",
    "*",
    "/",
    "^",
    "|>",
    ",",
    ":",
    "real",
    "int",
    "bool",
    "in",
    "[0, 1)",
    "> 0",
    "if",
    "then",
    "else",
    "and",
    "or",
    "not",
    "0.9",
    "1e-3",
    "100_000",
    "-1",
    "true",
    "norm(grad, global)",
    "sqrt",
    "adam",
    "sgd",
    "learning_rate",
    "lr",
    "groups",
    "rest",
    "except",
    "\"*.bias\"",
    "update",
    "steps",
    "\n",
    "at",
    "join",
    "none",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..60).prop_map(|t| t.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let _ = compile("fuzz.anneal", &text);
    }

    #[test]
    fn token_soup_never_panics(text in soup()) {
        let _ = compile("fuzz.anneal", &text);
    }

    #[test]
    fn mutated_example_never_panics(cut in 0usize..600, insert in prop::sample::select(TOKENS)) {
        let src = include_str!("../../examples/quickstart.anneal");
        let mut at = cut.min(src.len());
        while !src.is_char_boundary(at) { at -= 1; }
        let text = format!("{}{} {}", &src[..at], insert, &src[at..]);
        let c = compile("fuzz.anneal", &text);
        // Whatever was built, rendering the diagnostics must not panic either.
        let _ = anneal_compiler::diagnostic::render(&c.diagnostics, &c.sources, false);
    }
}

#[test]
fn pathological_nesting_and_chains_are_refused_not_overflowed() {
    for text in [
        format!("schedule s() = {}1{}", "(".repeat(5000), ")".repeat(5000)),
        format!("schedule s() = {}1", "1 + ".repeat(20000)),
        format!("schedule s() = {}1", "-".repeat(20000)),
        format!("transform t() {{\n grad = {}grad\n}}", "not ".repeat(5000)),
    ] {
        let c = compile("deep.anneal", &text);
        assert!(
            c.diagnostics.iter().any(|d| d.code == "E0001"),
            "{:?}",
            c.diagnostics
        );
    }
}

/// A syntax error at a token that starts with a two-byte whitespace character (U+0085,
/// NEXT LINE, which Rust counts as whitespace) is reported on that whole character; the
/// error used to slice inside it and panic (found by `random_bytes_never_panic`).
#[test]
fn an_error_at_a_multibyte_whitespace_character_is_reported() {
    for text in ["\u{85}", "\u{85}x", "recipe r {\u{85}", "q\u{2028}y"] {
        let c = compile("nel.anneal", text);
        assert!(c.has_errors(), "{text:?}");
    }
}
