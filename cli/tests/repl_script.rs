//! `anneal repl < script`: the REPL run non-interactively, as scripts and tests use it.
//! Each entry's output goes to stdout; the first error stops the script with status 1.

mod common;

use common::{root, stderr as err, stdout as out};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repl(args: &[&str], script: &str) -> Output {
    repl_in(&root(), args, script)
}

/// `anneal repl ARGS < script`, run in `dir`.
fn repl_in(dir: &Path, args: &[&str], script: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_anneal"))
        .arg("repl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run anneal repl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write the script");
    child.wait_with_output().expect("wait for anneal repl")
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("anneal-repl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The numbers after `key ` in the output's lines, in order.
fn values(text: &str, key: &str) -> Vec<f64> {
    text.match_indices(&format!("{key} "))
        .filter_map(|(i, m)| {
            text[i + m.len()..]
                .split(|c: char| c == ',' || c.is_whitespace())
                .next()
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

#[test]
fn a_newcomer_defines_an_optimizer_compares_it_with_adamw_and_saves_the_recipe() {
    // The README's session (examples/repl/), run where its plot may be written; its data
    // path falls back to the bundled copy of digits.csv there.
    let dir = temp_dir().join("newcomer");
    std::fs::create_dir_all(&dir).expect("dir");
    let example = std::fs::read_to_string(root().join("examples/repl/signum_vs_adamw.repl"))
        .expect("the example script");
    let o = repl_in(&dir, &[], &format!("{example}:save session.anneal\n"));
    let saved = dir.join("session.anneal");
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let text = out(&o);
    assert!(text.contains("defined optimizer signum"), "{text}");
    assert!(text.contains("mine: step 200, loss"), "{text}");
    assert!(text.contains("baseline: step 200, loss"), "{text}");
    assert_eq!(text.matches("(200 steps)").count(), 2, "{text}");
    assert!(dir.join("anneal-loss.png").exists());
    // Both learn the digits (10 classes: chance is 0.1).
    let acc = values(&text, "test accuracy");
    assert_eq!(acc.len(), 2, "{text}");
    assert!(acc.iter().all(|a| *a > 0.8), "{acc:?}");
    // The saved file is a recipe file the checker accepts, doc comment included.
    let file = std::fs::read_to_string(&saved).expect("saved file");
    assert!(
        file.contains("/// Signum: the sign of a momentum"),
        "{file}"
    );
    let check = Command::new(env!("CARGO_BIN_EXE_anneal"))
        .args(["check", saved.to_str().expect("utf-8 path")])
        .output()
        .expect("anneal check");
    assert!(check.status.success(), "{}", err(&check));
}

#[test]
fn steps_in_pieces_end_where_one_run_ends_on_every_back_end() {
    // `:step` resumes from the optimizer state the last step left: 4 x 25 steps must give
    // the loss and weights of one 100-step run (to the printed digits), whichever back end
    // runs each piece.
    let head = "import std.torch.{clip_grad_norm_, AdamW}\n\
                recipe r {\n  update = clip_grad_norm_(max_norm: 1.0) |> AdamW(lr: 3e-3, weight_decay: 0.01)\n}\n\
                :model mlp:64,32,10:tanh\n:data digits.csv\n";
    let whole = repl(&[], &format!("{head}:run 100\n:show 0.bias\n"));
    assert!(whole.status.success(), "{}", err(&whole));
    let mut pieces =
        format!("{head}:step 25\n:backend interp\n:step 25\n:backend llvm\n:step 25\n");
    pieces.push_str(":backend cranelift\n:step 25\n:show 0.bias\n");
    let split = repl(&[], &pieces);
    assert!(split.status.success(), "{}", err(&split));
    let (a, b) = (out(&whole), out(&split));
    let last_loss = |t: &str| values(t, "loss").last().copied();
    assert!(last_loss(&a).is_some(), "{a}");
    assert_eq!(last_loss(&a), last_loss(&b), "{a}\n---\n{b}");
    assert!(b.contains("r: step 100, loss"), "{b}");
    assert_eq!(values(&a, "norm"), values(&b, "norm"), "{a}\n---\n{b}");
}

#[test]
fn show_reports_a_schedule_by_its_formula_and_state_buffers() {
    // optax.linear_schedule(1, 0, 10) at count 4 is 1 - 4/10 = 0.6.
    let o = repl(
        &[],
        "import std.optax.{linear_schedule, sgd}\n\
         recipe r {\n  steps 10\n  schedule lr = linear_schedule(init_value: 1.0, end_value: 0.0, transition_steps: 10)\n  \
         update = sgd(learning_rate: lr, momentum: 0.9)\n}\n\
         :show lr\n:model rosenbrock\n:step 4\n:show lr\n:show trace.m\n",
    );
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(text.contains("lr = 1.0000 at step 0"), "{text}");
    assert!(text.contains("lr = 0.6000 at step 4"), "{text}");
    // sgd's momentum buffer, summarized per tensor.
    assert!(text.contains("trace.m[xy]"), "{text}");
    assert!(text.contains("shape [2]"), "{text}");
}

#[test]
fn plot_writes_a_png_and_prints_a_sparkline() {
    let png = temp_dir().join("loss.png");
    let o = repl(
        &[],
        &format!(
            "import std.optax.{{adam}}\nrecipe r {{ update = adam(learning_rate: 0.01) }}\n\
             :model rosenbrock\n:run 50\n:plot loss {}\n",
            png.display()
        ),
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("(50 steps)"), "{}", out(&o));
    let bytes = std::fs::read(&png).expect("png written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn a_bad_entry_stops_the_script_with_its_diagnostic_and_line() {
    let o = repl(
        &[],
        "import std.optax.{adam}\n\n\
         recipe r {\n  update = adam(learning_rate: 0.1, b1: 1.5)\n}\n:run 3\n",
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let e = err(&o);
    assert!(e.contains("b1"), "{e}");
    assert!(e.contains("line 3 of the script"), "{e}");
    // The run after the bad entry never happened.
    assert!(!out(&o).contains("step 3"), "{}", out(&o));
}

#[test]
fn script_errors_name_the_fix() {
    let cases: &[(&str, &str)] = &[
        (":stpe 5\n", "did you mean `:step`?"),
        (":step 3\n", "no recipe yet"),
        (":backend cuda\n", "choose auto, interp, cranelift, llvm, wgsl or triton"),
        (":data no/such/file.csv\n", "no/such/file.csv"),
        ("recipe r {\n  steps 3\n", "never closed"),
        (":load no/such.anneal\n", "cannot read no/such.anneal"),
        (
            "import std.optax.{sgd}\nrecipe r { update = sgd(learning_rate: 0.1) }\n:show nothing\n",
            "no `nothing` in recipe `r`",
        ),
    ];
    for (script, needle) in cases {
        let o = repl(&[], script);
        assert_eq!(o.status.code(), Some(1), "{script}: {}", out(&o));
        assert!(err(&o).contains(needle), "{script}: {}", err(&o));
    }
}

#[test]
fn a_file_given_on_the_command_line_is_loaded_first() {
    let o = repl(
        &["examples/digits_mlp.anneal"],
        ":list\n:explain\n:run 20\n",
    );
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(text.contains("defined recipe digits_mlp"), "{text}");
    assert!(text.contains("recipe digits_mlp   (current)"), "{text}");
    assert!(text.contains("passes over memory"), "{text}");
    // The recipe's own model and data (relative to the file) are used.
    assert!(text.contains("digits_mlp: step 20, loss"), "{text}");
}

#[test]
fn redefining_an_optimizer_restarts_training_with_the_new_rule() {
    let o = repl(
        &[],
        "optimizer gd(lr: real = 0.1) { param -= lr * grad }\n\
         recipe r { update = gd(lr: 0.001) }\n:model rosenbrock\n:step 2\n:show xy\n\
         optimizer gd(lr: real = 0.1) { param -= 0 * lr * grad }\n:step 2\n:show xy\n",
    );
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(text.contains("redefined optimizer gd"), "{text}");
    assert!(text.contains("training restarts"), "{text}");
    // Gradient descent moves off Rosenbrock's start (-1.2, 1); the redefined rule takes
    // zero steps from a fresh start, so the point is the start again: min -1.2, max 1.
    let mins = values(&text, "min");
    let maxs = values(&text, "max");
    assert_eq!(mins.len(), 2, "{text}");
    assert_ne!(mins[0], -1.2, "{text}");
    assert_eq!((mins[1], maxs[1]), (-1.2, 1.0), "{text}");
}

#[test]
fn show_names_state_by_the_stage_as_written() {
    // One AdamW step at Rosenbrock's start (-1.2, 1): the gradient there is
    // (-2(1 - x) - 400x(y - x²), 200(y - x²)) = (-215.6, -88), so the first moment is
    // (1 - β1)·g = (-21.56, -8.8) and the second (1 - β2)·g² = (46.4834, 7.744).
    let o = repl(
        &[],
        "import std.torch.{AdamW}\nrecipe b { update = AdamW(lr: 1e-3) }\n\
         :model rosenbrock\n:step 1\n:show AdamW.m\n:show v\n",
    );
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.contains("AdamW.m[xy]  shape [2]  min -21.5600  max -8.8000"),
        "{text}"
    );
    assert!(
        text.contains("AdamW.v[xy]  shape [2]  min 7.7440  max 46.4834"),
        "{text}"
    );
}
