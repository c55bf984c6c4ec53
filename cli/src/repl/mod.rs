//! `anneal repl [FILE]`: define optimizers, schedules and recipes, compile them in
//! milliseconds, train a model step by step, inspect and plot. Entry point: `repl`.
//! On a terminal it runs the line editor (`editor`); with input from a pipe or file it runs
//! the lines as a script and stops at the first error with a non-zero exit status.

mod editor;
mod session;

pub use session::Session;

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

pub fn repl(file: Option<&Path>) -> ExitCode {
    // While the line editor reads, Ctrl-C is a key; while a command runs it is a signal:
    // during training it stops the training at the next step, otherwise it ends the
    // program as usual.
    let handler = ctrlc::set_handler(|| {
        if session::TRAINING.load(Ordering::SeqCst) {
            session::INTERRUPTED.store(true, Ordering::SeqCst);
        } else {
            std::process::exit(130);
        }
    });
    if let Err(e) = handler {
        eprintln!("note: Ctrl-C will end the REPL even during training ({e})");
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let mut session = Session::new();
    session.color = interactive && std::io::stderr().is_terminal();
    session.progress = std::io::stderr().is_terminal();
    if let Some(f) = file {
        match session.eval(&format!(":load {}", f.display())) {
            Ok(reply) => println!("{}", reply.text),
            Err(e) => {
                eprintln!("{}", editor::error_text(&e));
                if !interactive {
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if interactive {
        editor::interactive(&mut session)
    } else {
        script(&mut session, std::io::stdin().lock())
    }
}

/// Whether `text` holds only comments and blank lines.
fn comments_only(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with("//"))
}

/// Runs `input` entry by entry (a definition continues until its brackets close; a
/// `:command` is one line); stops at the first error.
pub fn script(session: &mut Session, input: impl BufRead) -> ExitCode {
    let mut entry = String::new();
    let mut first = 0;
    for (i, line) in input.lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot read the script at line {}: {e}", i + 1);
                return ExitCode::FAILURE;
            }
        };
        if entry.trim().is_empty() {
            first = i + 1;
        }
        entry.push_str(&line);
        entry.push('\n');
        let command = entry.trim_start().starts_with(':');
        // Comments wait for the definition they describe.
        if !command && (comments_only(&entry) || !editor::balanced(&entry)) {
            continue;
        }
        let text = std::mem::take(&mut entry);
        match session.eval(&text) {
            Ok(reply) => {
                if !reply.text.is_empty() {
                    println!("{}", reply.text);
                }
                if reply.quit {
                    return ExitCode::SUCCESS;
                }
            }
            Err(e) => {
                eprintln!("{}", editor::error_text(&e));
                eprintln!("error: the entry at line {first} of the script failed; stopping");
                return ExitCode::FAILURE;
            }
        }
    }
    if !comments_only(&entry) {
        eprintln!(
            "error: the script ends inside the entry that starts at line {first}: a brace, \
             bracket or parenthesis is never closed"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
