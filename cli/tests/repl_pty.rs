//! The REPL driven through a pseudo-terminal, as a person types: completion, multi-line
//! definitions, redefinition, a bad line that leaves the session running, Ctrl-C (on a
//! line and during training), a `:run` and Ctrl-D. The helper answers the line editor's cursor-position queries as a terminal
//! would.

use expectrl::process::NonBlocking;
use expectrl::Session;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

struct Pty {
    session: expectrl::session::OsSession,
    /// Everything printed so far, escape sequences removed.
    seen: String,
    /// How much of `seen` the last `wait_for` consumed.
    from: usize,
}

impl Pty {
    fn start(history: &std::path::Path) -> Pty {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_anneal"));
        cmd.arg("repl")
            .env("ANNEAL_HISTORY", history)
            .env("TERM", "xterm")
            .env("NO_COLOR", "1");
        let mut session = Session::spawn(cmd).expect("spawn anneal repl in a pty");
        session
            .get_stream_mut()
            .set_blocking(false)
            .expect("non-blocking pty");
        Pty {
            session,
            seen: String::new(),
            from: 0,
        }
    }

    /// Reads until `needle` appears after what earlier waits consumed, answering cursor
    /// queries; panics with the transcript after 60 s.
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut raw = Vec::new();
        loop {
            let mut buf = [0u8; 4096];
            match self.session.read(&mut buf) {
                Ok(n) if n > 0 => raw.extend_from_slice(&buf[..n]),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
            let text = String::from_utf8_lossy(&raw).to_string();
            let queries = text.matches("\x1b[6n").count();
            if queries > 0 {
                for _ in 0..queries {
                    self.session
                        .write_all(b"\x1b[1;1R")
                        .expect("answer the cursor query");
                }
                self.session.flush().ok();
            }
            self.seen.push_str(&strip_escapes(&text));
            raw.clear();
            if let Some(i) = self.seen[self.from..].find(needle) {
                self.from += i + needle.len();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the REPL's output:\n{}",
                self.seen
            );
        }
    }

    fn send(&mut self, text: &str) {
        self.session
            .write_all(text.as_bytes())
            .expect("write to the pty");
        self.session.flush().expect("flush the pty");
    }

    /// Types a line and presses Enter.
    fn line(&mut self, text: &str) {
        self.send(text);
        self.send("\r");
    }
}

/// The text without CSI / OSC escape sequences.
fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() || d == '~' {
                        break;
                    }
                }
            }
            Some(']') => {
                for d in chars.by_ref() {
                    if d == '\x07' {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn a_typed_session_defines_completes_redefines_and_runs() {
    let history = std::env::temp_dir().join(format!("anneal-repl-pty-{}", std::process::id()));
    let _ = std::fs::remove_file(&history);
    let mut p = Pty::start(&history);
    p.wait_for("Ctrl-D leaves");
    // Multi-line: the definition continues until its brace closes.
    p.line("optimizer plain_descent(lr: real > 0 = 0.1) {");
    p.line("  param -= lr * grad");
    p.line("}");
    p.wait_for("defined optimizer plain_descent");
    // Completion: `plain_d` + Tab is the one name that fits.
    p.send("recipe r { update = plain_d");
    p.send("\t");
    p.line("(lr: 0.05) }");
    p.wait_for("defined recipe r: plain_descent");
    // Redefinition replaces it.
    p.line("optimizer plain_descent(lr: real > 0 = 0.1) { param -= 2 * lr * grad }");
    p.wait_for("redefined optimizer plain_descent");
    // A bad line prints its diagnostic; the session goes on.
    p.line("optimizer broken(lr: real = 0.1) { param -= lr * gradd }");
    p.wait_for("gradd");
    // Ctrl-C cancels a half-typed definition.
    p.line("recipe half {");
    p.wait_for("recipe half {");
    p.send("\x03");
    // Keys typed while the editor redraws after Ctrl-C can be lost; a person pauses too.
    std::thread::sleep(Duration::from_millis(500));
    p.line(":list");
    // Had the half recipe been entered, it would be the current one.
    p.wait_for("recipe r   (current)");
    // Command completion, then a run with a model and data.
    p.send(":mod");
    p.send("\t");
    p.line("mlp:64,32,10:tanh");
    p.wait_for("model mlp:64,32,10:tanh");
    p.line(":data digits.csv");
    p.wait_for("data digits.csv");
    p.line(":run 30");
    p.wait_for("r: step 30, loss");
    p.wait_for("test accuracy");
    // Ctrl-C during a long run stops the training, not the REPL; it goes on from there.
    p.line(":run 100000000");
    p.wait_for("/100000000");
    p.send("\x03");
    p.wait_for("interrupted at step");
    p.line(":step 2");
    p.wait_for("r#2: step");
    // Ctrl-D leaves with status 0.
    p.send("\x04");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match p.session.get_process_mut().status() {
            Ok(expectrl::process::unix::WaitStatus::Exited(_, code)) => {
                assert_eq!(code, 0);
                break;
            }
            Ok(expectrl::process::unix::WaitStatus::StillAlive) | Err(_) => {}
            Ok(other) => panic!("the REPL ended with {other:?}"),
        }
        assert!(Instant::now() < deadline, "Ctrl-D did not end the REPL");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The history outlives the session.
    let saved = std::fs::read_to_string(&history).unwrap_or_default();
    assert!(saved.contains(":run 30"), "history file holds: {saved:?}");
    let _ = std::fs::remove_file(&history);
}
