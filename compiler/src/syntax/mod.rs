//! Parsing: source text → `Ast`, through the pest grammar in `grammar/anneal.pest`.
//! Entry point: `parse`. A syntax error does not stop the file: the text is cut at
//! top-level items and every item is parsed on its own, so one run reports every broken
//! item and keeps the good ones for the checker.

use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};
use anneal_grammar::{AnnealParser, Rule};
use pest::iterators::Pair;
use pest::Parser;

mod build;
use build::build_file;
pub use build::parse_number;

/// Deeper bracket nesting than this is refused before parsing: every level costs stack in
/// the parser and in each later stage, and no recipe needs it.
const MAX_NESTING: usize = 64;
/// Operands in one chain of binary operators (`a + b + ...`) or prefix operators.
const MAX_CHAIN: usize = 1000;

/// Parses one file. Returns what could be built and every syntax error found.
pub fn parse(file: FileId, text: &str) -> (Ast, Vec<Diagnostic>) {
    if let Some(at) = too_deep(text) {
        let span = Span::new(file, at..at + 1);
        let d = Diagnostic::error(
            "E0001",
            span,
            format!("brackets nest more than {MAX_NESTING} deep"),
        )
        .with_label("too deep")
        .with_help("split the expression with `let` bindings");
        return (Ast::default(), vec![d]);
    }
    match AnnealParser::parse(Rule::file, text) {
        Ok(mut pairs) => {
            let mut ast = Ast::default();
            let mut errors = Vec::new();
            if let Some(file_pair) = pairs.next() {
                build_file(file, 0, file_pair, &mut ast, &mut errors);
            }
            (ast, errors)
        }
        Err(_) => parse_in_chunks(file, text),
    }
}

const TOP_LEVEL: [&str; 7] = [
    "module",
    "import",
    "transform",
    "optimizer",
    "schedule",
    "function",
    "recipe",
];

/// Error recovery: each top-level item starts on a line beginning (column 0) with one of
/// `TOP_LEVEL`; parse every such chunk as a file of its own.
fn parse_in_chunks(file: FileId, text: &str) -> (Ast, Vec<Diagnostic>) {
    let mut starts = vec![0];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let starts_item = TOP_LEVEL.iter().any(|k| {
            line.strip_prefix(k)
                .is_some_and(|rest| rest.starts_with([' ', '\t']))
        });
        if starts_item && offset != 0 {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts.push(text.len());
    let mut ast = Ast::default();
    let mut errors = Vec::new();
    for w in starts.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        let chunk = &text[lo..hi];
        match AnnealParser::parse(Rule::file, chunk) {
            Ok(mut pairs) => {
                if let Some(p) = pairs.next() {
                    build_file(file, lo, p, &mut ast, &mut errors);
                }
            }
            Err(e) => errors.push(syntax_error(file, lo, chunk, &e)),
        }
    }
    (ast, errors)
}

/// The syntax error of a recipe item that failed to parse as `rule` (it was read as an
/// unknown item so the rest of the recipe still parses); `at` is its offset in the file
/// and `text` its text. Broken at its first word (`model: mlp(...)`), it is shown its form.
pub(super) fn item_syntax_error(
    file: FileId,
    (at, text): (usize, &str),
    rule: Rule,
    form: &str,
) -> Diagnostic {
    let word = text
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("");
    match AnnealParser::parse(rule, text) {
        Err(e) if !matches!(e.location, pest::error::InputLocation::Pos(0)) => {
            syntax_error(file, at, text, &e)
        }
        // Only a prefix would parse (that cannot happen: the item parser tried it first) or
        // the item is wrong from its start: show how it is written.
        _ => Diagnostic::error(
            "E0001",
            Span::new(file, at..at + text.len()),
            format!("syntax error: `{word}` is written `{form}`"),
        )
        .with_label(format!("not a `{word}` item"))
        .with_help("see spec/syntax.md for the form of each recipe item"),
    }
}

fn syntax_error(
    file: FileId,
    base: usize,
    chunk: &str,
    e: &pest::error::Error<Rule>,
) -> Diagnostic {
    let pos = match e.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    // Point at the offending token (up to the next space), or at the end of input.
    let rest = &chunk[pos.min(chunk.len())..];
    // At least the first character, whole: a token that starts with a multi-byte
    // whitespace character (U+0085) must not be cut inside it.
    let len = match rest.chars().next() {
        None => 0,
        Some(c) if c.is_whitespace() => c.len_utf8(),
        Some(_) => rest
            .char_indices()
            .find(|(_, c)| c.is_whitespace())
            .map_or(rest.len(), |(i, _)| i),
    };
    let span = Span::new(file, base + pos..base + pos + len);
    let found = if rest.is_empty() {
        "end of file".to_string()
    } else {
        format!("`{}`", &rest[..len])
    };
    let expected = match &e.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => describe_expected(positives),
        pest::error::ErrorVariant::CustomError { message } => message.clone(),
    };
    if let Some((open, at)) = unclosed_bracket(&chunk[..pos.min(chunk.len())]) {
        let close = match open {
            '(' => ')',
            '[' => ']',
            _ => '}',
        };
        let found_closer = rest.starts_with([')', ']', '}']) || rest.is_empty();
        if found_closer && !rest.starts_with(close) {
            let open_span = Span::new(file, base + at..base + at + 1);
            return Diagnostic::error(
                "E0001",
                span,
                format!("syntax error: `{open}` is never closed, found {found}"),
            )
            .with_label(format!("expected `{close}` before this"))
            .with_secondary(open_span, format!("this `{open}` is still open"))
            .with_help(format!("add `{close}` to close it"));
        }
    }
    Diagnostic::error(
        "E0001",
        span,
        format!("syntax error: expected {expected}, found {found}"),
    )
    .with_label(format!("expected {expected} here"))
    .with_help(
        "see spec/syntax.md for the form of each construct; a definition is \
             `transform NAME(params) { ... }`, a recipe `recipe NAME { ... }`",
    )
}

/// The offset of the first bracket that opens level MAX_NESTING + 1, if any.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// The innermost bracket still open at the end of `text`, with its offset; strings and
/// comments are skipped.
fn unclosed_bracket(text: &str) -> Option<(char, usize)> {
    let mut stack: Vec<(char, usize)> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => stack.push((bytes[i] as char, i)),
            b')' | b']' | b'}' => {
                stack.pop();
            }
            _ => {}
        }
        i += 1;
    }
    stack.pop()
}

fn describe_expected(rules: &[Rule]) -> String {
    let mut words: Vec<&str> = rules.iter().map(|r| rule_name(*r)).collect();
    words.sort_unstable();
    words.dedup();
    match words.len() {
        0 => "something else".into(),
        1 => words[0].into(),
        _ => {
            let last = words.pop().unwrap_or_default();
            format!("{} or {}", words.join(", "), last)
        }
    }
}

fn rule_name(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of file",
        Rule::ident | Rule::path | Rule::path_segment => "a name",
        Rule::number => "a number",
        Rule::string => "a quoted pattern",
        Rule::expr
        | Rule::if_expr
        | Rule::pipe
        | Rule::or_expr
        | Rule::and_expr
        | Rule::not_expr
        | Rule::cmp_expr
        | Rule::add_expr
        | Rule::mul_expr
        | Rule::unary
        | Rule::power
        | Rule::postfix
        | Rule::boolean
        | Rule::list
        | Rule::map => "an expression",
        Rule::definition | Rule::def_kind => "`transform`, `optimizer` or `schedule`",
        Rule::recipe => "`recipe`",
        Rule::import => "`import`",
        Rule::module_decl => "`module`",
        Rule::param => "a parameter `name: type`",
        Rule::ty | Rule::scalar_ty | Rule::list_ty | Rule::map_ty => {
            "a type (`real`, `int`, `bool`, `schedule`, `[real]`)"
        }
        Rule::choice_constraint => "a set of strings such as `in {\"cos\", \"linear\"}`",
        Rule::constraint | Rule::range_constraint | Rule::bound_constraint => {
            "a range such as `in [0, 1)`"
        }
        Rule::block => "`{`",
        Rule::state_decl => "`state`",
        Rule::let_stmt => "`let`",
        Rule::skip_stmt => "`skip if`",
        Rule::run_stmt | Rule::run_kw => "`run`",
        Rule::builtin_body => "`builtin \"name\"`",
        Rule::observe_block => "`observe { ... }`",
        Rule::every_block | Rule::every_kw | Rule::steps_kw => "`every k steps { ... }`",
        Rule::matrix_shape | Rule::matrix_dim => "a matrix shape such as `matrix(rows, rows)`",
        Rule::assign | Rule::assign_op => "an assignment",
        Rule::result_expr => "an expression",
        Rule::steps_item => "`steps`",
        Rule::schedule_item => "`schedule`",
        Rule::update_item => "`update`",
        Rule::model_item => "`model`",
        Rule::precision_item | Rule::precision_entry => "`precision { params: bf16 }`",
        Rule::parallel_item | Rule::parallel_entry => "`parallel { data: 8, zero: 1 }`",
        Rule::data_item => "`data`",
        Rule::curriculum_item | Rule::curriculum_entry => "`curriculum { pace = ... }`",
        Rule::after_clause => "`after STEP`",
        Rule::groups_item => "`groups`",
        Rule::group_def => "a group `name = \"pattern\"`",
        Rule::rest_kw => "`rest`",
        Rule::patterns => "a quoted pattern",
        Rule::except_clause => "`except`",
        Rule::call_args => "`(`",
        Rule::index => "`[`",
        Rule::arg => "an argument",
        Rule::cmp_op => "a comparison",
        Rule::add_op | Rule::mul_op | Rule::pow_op | Rule::pipe_op => "an operator",
        Rule::or_op | Rule::and_op => "`and` or `or`",
        Rule::not_op => "`not`",
        Rule::neg_op => "`-`",
        Rule::extent_kw => "`element`, `tensor` or `scalar`",
        Rule::import_tail | Rule::import_all | Rule::import_names => "`.{names}` or `.*`",
        Rule::open_bracket => "`[` or `(`",
        Rule::close_bracket => "`]` or `)`",
        Rule::map_entry => "a `key: value` entry",
        _ => "a token",
    }
}
