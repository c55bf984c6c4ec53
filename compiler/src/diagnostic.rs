//! Diagnostics as data, and the one place that knows ariadne. Stages build `Diagnostic`
//! values where they find a problem; `render` turns them into rustc-style reports and
//! `to_json` into the `--json` form.

use crate::source::{Sources, Span};
use ariadne::{Color, Config, IndexType, Label, Report, ReportKind};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A problem found in user input: a stable code, where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    /// Secondary labels; the primary label is `label` at `span`.
    pub label: String,
    pub labels: Vec<(Span, String)>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            span,
            label: String::new(),
            labels: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, span, message)
        }
    }

    /// The text under the primary span.
    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.labels.push((span, label.into()));
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// True when any diagnostic is an error (warnings alone do not fail a check).
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(Diagnostic::is_error)
}

/// Renders diagnostics as ariadne reports, in the order given. `color` is for terminals;
/// tests and pipes use plain text.
pub fn render(diagnostics: &[Diagnostic], sources: &Sources, color: bool) -> String {
    let mut out = Vec::new();
    let cache = ariadne::sources(
        sources
            .files
            .iter()
            .map(|f| (f.name.clone(), f.text.clone()))
            .collect::<Vec<_>>(),
    );
    let mut cache = cache;
    for d in diagnostics {
        let kind = match d.severity {
            Severity::Error => ReportKind::Error,
            Severity::Warning => ReportKind::Warning,
        };
        let file = sources.name(d.span.file).to_string();
        let primary_color = match d.severity {
            Severity::Error => Color::Red,
            Severity::Warning => Color::Yellow,
        };
        let mut report = Report::build(kind, (file.clone(), d.span.range()))
            .with_config(
                Config::default()
                    .with_color(color)
                    .with_index_type(IndexType::Byte),
            )
            .with_code(d.code)
            .with_message(&d.message)
            .with_label(
                Label::new((file.clone(), d.span.range()))
                    .with_message(if d.label.is_empty() {
                        d.message.clone()
                    } else {
                        d.label.clone()
                    })
                    .with_color(primary_color),
            );
        for (span, text) in &d.labels {
            if span.file == d.span.file {
                report = report.with_label(
                    Label::new((sources.name(span.file).to_string(), span.range()))
                        .with_message(text)
                        .with_color(Color::Blue),
                );
            } else {
                // Another file (usually the standard library): a pointer, not a snippet.
                let (line, col) = sources.line_col(span.file, span.start);
                report =
                    report.with_note(format!("{text}: {}:{line}:{col}", sources.name(span.file)));
            }
        }
        if let Some(help) = &d.help {
            report = report.with_help(help);
        }
        // Writing into a Vec cannot fail except for a cache miss, which `sources` rules out.
        let _ = report.finish().write(&mut cache, &mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: &'a str,
    severity: Severity,
    message: &'a str,
    file: &'a str,
    line: usize,
    column: usize,
    start: usize,
    end: usize,
    label: &'a str,
    help: Option<&'a str>,
}

/// The `--json` form: one object per diagnostic, with file, line and column.
pub fn to_json(diagnostics: &[Diagnostic], sources: &Sources) -> serde_json::Value {
    let items: Vec<JsonDiagnostic> = diagnostics
        .iter()
        .map(|d| {
            let (line, column) = sources.line_col(d.span.file, d.span.start);
            JsonDiagnostic {
                code: d.code,
                severity: d.severity,
                message: &d.message,
                file: sources.name(d.span.file),
                line,
                column,
                start: d.span.start,
                end: d.span.end,
                label: &d.label,
                help: d.help.as_deref(),
            }
        })
        .collect();
    serde_json::to_value(items).unwrap_or(serde_json::Value::Null)
}

/// The closest of `candidates` to `name`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(&name.to_lowercase(), &c.to_lowercase());
        if score > 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}
