//! The interactive line editor over `reedline`: an entry continues while its braces,
//! brackets or parentheses are open; Tab completes keywords, library names, the session's
//! definitions and commands; keywords, numbers, strings, comments and commands are
//! colored; history persists between sessions; Ctrl-C cancels the line, Ctrl-D leaves.

use super::session::{Session, COMMANDS, KEYWORDS};
use nu_ansi_term::{Color, Style};
use reedline::{
    default_emacs_keybindings, ColumnarMenu, Completer, CompletionResult, Emacs, FileBackedHistory,
    Highlighter, KeyCode, KeyModifiers, MenuBuilder, Prompt, PromptEditMode, PromptHistorySearch,
    Reedline, ReedlineEvent, ReedlineMenu, Signal, StyledText, Suggestion, ValidationResult,
    Validator,
};
use std::borrow::Cow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Whether `text` closes every brace, bracket and parenthesis it opens (outside strings
/// and `//` comments): an entry is complete then.
pub fn balanced(text: &str) -> bool {
    let mut depth = 0i64;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                for d in chars.by_ref() {
                    if d == '"' || d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    depth <= 0
}

struct Balance;

impl Validator for Balance {
    fn validate(&self, line: &str) -> ValidationResult {
        if line.trim_start().starts_with(':') || balanced(line) {
            ValidationResult::Complete
        } else {
            ValidationResult::Incomplete
        }
    }
}

/// Completion over the session's words, refreshed after every entry.
struct Words(Arc<Mutex<Vec<String>>>);

impl Completer for Words {
    fn complete(&mut self, line: &str, pos: usize) -> CompletionResult {
        let before = line.get(..pos).unwrap_or(line);
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_alphanumeric() || matches!(c, '_' | '.' | ':')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let word = &before[start..];
        if word.is_empty() {
            return CompletionResult::fresh(Vec::<Suggestion>::new());
        }
        let command = word.starts_with(':') && before[..start].trim().is_empty();
        let words: Vec<String> = if command {
            COMMANDS.iter().map(|(n, _, _)| n.to_string()).collect()
        } else {
            self.0.lock().map(|w| w.clone()).unwrap_or_default()
        };
        let suggestions: Vec<Suggestion> = words
            .into_iter()
            .filter(|w| w.starts_with(word) && w != word)
            .map(|w| Suggestion {
                value: w,
                span: reedline::Span::new(start, pos),
                append_whitespace: command,
                ..Suggestion::default()
            })
            .collect();
        CompletionResult::fresh(suggestions)
    }
}

/// Colors: keywords, the session's and library's names, numbers, strings, comments,
/// commands.
struct Colors(Arc<Mutex<Vec<String>>>);

impl Highlighter for Colors {
    fn highlight(&self, line: &str, _cursor: usize) -> StyledText {
        let mut out = StyledText::new();
        if line.trim_start().starts_with(':') {
            let cut = line
                .trim_start()
                .find(char::is_whitespace)
                .map_or(line.len(), |i| i + line.len() - line.trim_start().len());
            out.push((Style::new().fg(Color::Cyan).bold(), line[..cut].to_string()));
            out.push((Style::new(), line[cut..].to_string()));
            return out;
        }
        let names = self.0.lock().map(|w| w.clone()).unwrap_or_default();
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < line.len() {
            let rest = &line[i..];
            let c = rest.chars().next().unwrap_or(' ');
            let (len, style) = if rest.starts_with("//") {
                let n = rest.find('\n').unwrap_or(rest.len());
                (n, Style::new().fg(Color::DarkGray))
            } else if c == '"' {
                let n = rest[1..].find(['"', '\n']).map_or(rest.len(), |j| j + 2);
                (n.min(rest.len()), Style::new().fg(Color::Green))
            } else if c.is_ascii_digit() {
                let n = rest
                    .find(|d: char| !(d.is_ascii_alphanumeric() || d == '.' || d == '_'))
                    .unwrap_or(rest.len());
                // `1e-3`: the sign after an exponent belongs to the number.
                let n = if bytes.get(i + n) == Some(&b'-') && rest[..n].ends_with(['e', 'E']) {
                    n + 1
                        + rest[n + 1..]
                            .find(|d: char| !d.is_ascii_digit())
                            .unwrap_or(rest.len() - n - 1)
                } else {
                    n
                };
                (n, Style::new().fg(Color::Yellow))
            } else if c.is_alphabetic() || c == '_' {
                let n = rest
                    .find(|d: char| !(d.is_alphanumeric() || d == '_'))
                    .unwrap_or(rest.len());
                let word = &rest[..n];
                let style = if KEYWORDS.contains(&word) {
                    Style::new().fg(Color::Magenta).bold()
                } else if names.iter().any(|w| w == word) {
                    Style::new().fg(Color::Blue)
                } else {
                    Style::new()
                };
                (n, style)
            } else {
                (c.len_utf8(), Style::new())
            };
            let len = len.max(c.len_utf8());
            out.push((style, rest[..len].to_string()));
            i += len;
        }
        out
    }
}

/// `anneal [2.3 ms]› `: the last entry's compile time.
struct AnnealPrompt {
    compile_ms: Option<f64>,
}

impl Prompt for AnnealPrompt {
    fn render_prompt_left(&self) -> Cow<'_, str> {
        match self.compile_ms {
            Some(ms) => Cow::Owned(format!("anneal [{ms:.1} ms]")),
            None => Cow::Borrowed("anneal"),
        }
    }

    fn render_prompt_right(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn render_prompt_indicator(&self, _mode: PromptEditMode) -> Cow<'_, str> {
        Cow::Borrowed("› ")
    }

    fn render_prompt_multiline_indicator(&self) -> Cow<'_, str> {
        Cow::Borrowed("   ... ")
    }

    fn render_prompt_history_search_indicator(&self, search: PromptHistorySearch) -> Cow<'_, str> {
        Cow::Owned(format!("(search: {})› ", search.term))
    }
}

/// Where history is kept: `$ANNEAL_HISTORY`, else `$XDG_STATE_HOME/anneal/history`, else
/// `~/.local/state/anneal/history`.
fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ANNEAL_HISTORY") {
        return Some(PathBuf::from(p));
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state.join("anneal").join("history"))
}

/// Reads entries until `:quit` or Ctrl-D; nothing the user types ends it otherwise.
pub fn interactive(session: &mut Session) -> ExitCode {
    let words = Arc::new(Mutex::new(session.words()));
    let mut keys = default_emacs_keybindings();
    keys.add_binding(
        KeyModifiers::NONE,
        KeyCode::Tab,
        ReedlineEvent::UntilFound(vec![
            ReedlineEvent::Menu("completion_menu".to_string()),
            ReedlineEvent::MenuNext,
        ]),
    );
    let mut editor = Reedline::create()
        .with_validator(Box::new(Balance))
        .with_completer(Box::new(Words(words.clone())))
        .with_highlighter(Box::new(Colors(words.clone())))
        .with_menu(ReedlineMenu::EngineCompleter(Box::new(
            ColumnarMenu::default().with_name("completion_menu"),
        )))
        // One match is inserted at once; several are narrowed to their common prefix.
        .with_quick_completions(true)
        .with_partial_completions(true)
        .with_edit_mode(Box::new(Emacs::new(keys)));
    if let Some(path) = history_path() {
        let made = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                FileBackedHistory::with_file(10_000, path.clone()).map_err(|e| e.to_string())
            });
        match made {
            Ok(h) => editor = editor.with_history(Box::new(h)),
            Err(e) => eprintln!(
                "note: no saved history ({}: {e}); set ANNEAL_HISTORY to a writable file",
                path.display()
            ),
        }
    }
    println!("anneal REPL — `:help` lists the commands, Ctrl-D leaves");
    let mut prompt = AnnealPrompt { compile_ms: None };
    loop {
        match editor.read_line(&prompt) {
            Ok(Signal::Success(line)) => match guarded(session, &line) {
                Ok(reply) => {
                    if !reply.text.is_empty() {
                        println!("{}", reply.text);
                    }
                    if reply.compile_ms.is_some() {
                        prompt.compile_ms = reply.compile_ms;
                    }
                    if reply.quit {
                        return ExitCode::SUCCESS;
                    }
                    if let Ok(mut w) = words.lock() {
                        *w = session.words();
                    }
                }
                Err(e) => eprintln!("{}", error_text(&e)),
            },
            Ok(Signal::CtrlD) => return ExitCode::SUCCESS,
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: the terminal failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// `session.eval`, with a panic (a defect of anneal, never of the input) reported as an
/// error instead of ending the session.
fn guarded(session: &mut Session, line: &str) -> Result<super::session::Reply, String> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.eval(line)));
    result.unwrap_or_else(|_| {
        session.eval(":reset").ok();
        Err(
            "internal error while running that entry (a defect in anneal: please report \
             it with the entry); weights and runs were reset, definitions kept"
                .into(),
        )
    })
}

/// A one-line message gets an `error:` prefix; rendered diagnostics already say what
/// they are.
pub fn error_text(e: &str) -> String {
    if e.contains('\n') {
        e.trim_end().to_string()
    } else {
        format!("error: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_complete_when_its_brackets_close() {
        assert!(balanced("recipe r { update = sgd(learning_rate: 0.1) }"));
        assert!(!balanced("optimizer o(lr: real = 0.1) {\n  state m = 0"));
        assert!(balanced("optimizer o(lr: real = 0.1) {\n  state m = 0\n}"));
        // Brackets in strings and comments do not count.
        assert!(balanced("recipe r { data = csv(file: \"a{.csv\") }"));
        assert!(balanced("// a { in a comment"));
        assert!(!balanced("schedule s() = join([a(),\n"));
    }

    #[test]
    fn completion_offers_names_that_extend_the_word_under_the_cursor() {
        let mut w = Words(Arc::new(Mutex::new(vec![
            "adam".into(),
            "adamw".into(),
            "sgd".into(),
        ])));
        let r = w.complete("update = ada", 12);
        let got: Vec<&str> = r.suggestions().iter().map(|s| s.value.as_str()).collect();
        assert_eq!(got, ["adam", "adamw"]);
        assert_eq!(r.suggestions()[0].span, reedline::Span::new(9, 12));
        let r = w.complete(":ru", 3);
        let got: Vec<&str> = r.suggestions().iter().map(|s| s.value.as_str()).collect();
        assert_eq!(got, [":run", ":runs"]);
    }

    #[test]
    fn highlighting_colors_keywords_names_numbers_strings_and_comments() {
        let h = Colors(Arc::new(Mutex::new(vec!["adamw".into()])));
        let styled = h.highlight("recipe r { update = adamw(lr: 1e-3) } // done", 0);
        let style_of = |text: &str| {
            styled
                .buffer
                .iter()
                .find(|(_, t)| t == text)
                .map(|(s, _)| *s)
        };
        assert_eq!(
            style_of("recipe"),
            Some(Style::new().fg(Color::Magenta).bold())
        );
        assert_eq!(style_of("adamw"), Some(Style::new().fg(Color::Blue)));
        assert_eq!(style_of("1e-3"), Some(Style::new().fg(Color::Yellow)));
        assert_eq!(style_of("// done"), Some(Style::new().fg(Color::DarkGray)));
        assert_eq!(style_of("r"), Some(Style::new()));
        // The pieces put back together are the line.
        let text: String = styled.buffer.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(text, "recipe r { update = adamw(lr: 1e-3) } // done");
    }
}
