//! `anneal export --target c`: the object and header build with gcc and the demo in
//! examples/c matches the interpreter; every example recipe that has a fused step exports
//! a header that compiles warning-free. Without gcc these tests fail under CI (which
//! installs it) and are skipped elsewhere.

mod common;

use common::{anneal, root};
use std::path::{Path, PathBuf};
use std::process::Command;

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("anneal-export-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn have_gcc() -> bool {
    let ok = Command::new("gcc").arg("--version").output().is_ok();
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "gcc is missing but CI is set: .ci/run installs build-essential"
    );
    ok
}

/// Builds `main_c` against `dir/NAME.o` and its header (gcc -Werror) into `exe` and runs
/// it on `dir/NAME.reference.txt`.
fn build_and_run(dir: &Path, main_c: &Path, name: &str, exe: &Path) -> std::process::Output {
    gcc(&[
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-I",
        dir.to_str().unwrap(),
        main_c.to_str().unwrap(),
        dir.join(format!("{name}.o")).to_str().unwrap(),
        "-lm",
        "-o",
        exe.to_str().unwrap(),
    ]);
    Command::new(exe)
        .arg(dir.join(format!("{name}.reference.txt")))
        .output()
        .unwrap()
}

fn gcc(args: &[&str]) {
    let out = Command::new("gcc").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "gcc {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_c_demo_links_the_exported_step_and_matches_the_interpreter() {
    demo("cranelift");
}

#[test]
fn the_c_demo_links_the_llvm_object_unchanged() {
    demo("llvm");
}

fn demo(backend: &str) {
    if !have_gcc() {
        return;
    }
    let dir = out_dir(&format!("demo-{backend}"));
    let d = dir.to_str().unwrap();
    let out = anneal(&[
        "export",
        "examples/c/adamw_clip.anneal",
        "--target",
        "c",
        "--backend",
        backend,
        "-o",
        d,
        "--reference",
        "10",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = dir.join("demo");
    let run = build_and_run(&dir, &root().join("examples/c/demo.c"), "adamw_clip", &exe);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("10320 values over 10 steps match anneal"),
        "{stdout}"
    );

    // A corrupted reference is caught: the demo really compares.
    let reference = dir.join("adamw_clip.reference.txt");
    let text = std::fs::read_to_string(&reference).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let last = lines.len() - 1;
    let fields: Vec<&str> = lines[last].split(' ').collect();
    let wrong: f64 = fields[3].parse::<f64>().unwrap() + 0.01;
    lines[last] = format!("{} {} {} {wrong:e}", fields[0], fields[1], fields[2]);
    std::fs::write(&reference, lines.join("\n")).unwrap();
    let run = Command::new(&exe).arg(&reference).output().unwrap();
    assert_eq!(run.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_fusable_example_exports_a_header_that_compiles() {
    if !have_gcc() {
        return;
    }
    let mut exported = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "anneal") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let dir = out_dir(&stem);
        let out = anneal(&[
            "export",
            path.to_str().unwrap(),
            "-o",
            dir.to_str().unwrap(),
        ]);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("cannot be exported"),
                "{}: {err}",
                path.display()
            );
            continue;
        }
        let header = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "h"))
            .unwrap();
        let main = dir.join("main.c");
        std::fs::write(
            &main,
            format!(
                "#include \"{}\"\nint main(void) {{ return 0; }}\n",
                header.display()
            ),
        )
        .unwrap();
        let object = header.with_extension("o");
        gcc(&[
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wno-unused-function",
            main.to_str().unwrap(),
            object.to_str().unwrap(),
            "-lm",
            "-o",
            dir.join("main").to_str().unwrap(),
        ]);
        exported += 1;
        let _ = std::fs::remove_dir_all(Path::new(&dir));
    }
    assert!(exported >= 5, "only {exported} examples exported");
}

/// The demo's harness for any exported recipe named `p`: the reference problem for the
/// steps the reference file holds, every value compared.
fn harness(p: &str) -> String {
    include_str!("../../examples/c/demo.c")
        .replace("adamw_clip", p)
        .replace("st.s0_scale", "0.0")
}

#[test]
fn exported_steps_match_the_interpreter_across_the_library() {
    if !have_gcc() {
        return;
    }
    let chains = [
        "sgd(learning_rate: 0.1, momentum: 0.9, nesterov: true)",
        "clip(max_delta: 0.3) |> adam(learning_rate: 0.05)",
        "add_decayed_weights(weight_decay: 0.1) |> lion(learning_rate: 0.01)",
        "lamb(learning_rate: 0.02)",
        "scale_by_trust_ratio() |> scale(step_size: -0.1)",
        "clip_grad_norm_(max_norm: 0.5) |> SGD(lr: 0.1, momentum: 0.9, weight_decay: 0.01)",
        "clip_grad_norm_(max_norm: 0.5, norm_type: 3) |> Adam(lr: 0.01, amsgrad: true)",
        "RMSprop(lr: 0.01, centered: true, momentum: 0.5)",
        "NAdam(lr: 0.01)",
        "RAdam(lr: 0.01)",
        "Rprop(lr: 0.01)",
        "ASGD(lr: 0.05)",
        "Adagrad(lr: 0.1)",
        "novograd(learning_rate: 0.01)",
        "GradScaler(init_scale: 2, growth_interval: 3) |> AdamW(lr: 0.01)",
        "ema(decay: 0.9) |> rprop(learning_rate: 0.01)",
        "adabound(learning_rate: 0.01)",
        // One stage holding mars's b1 and Adam's: two fields.
        "cautious(optimizer: mars(b1: 0.8, optimizer: adamw(learning_rate: 0.01)))",
    ];
    for (k, chain) in chains.iter().enumerate() {
        let dir = out_dir(&format!("lib{k}"));
        std::fs::create_dir_all(&dir).unwrap();
        let recipe = dir.join("r.anneal");
        std::fs::write(
            &recipe,
            format!(
                "import std.optax.*\nimport std.torch.*\nimport std.research.*\nrecipe lib{k} {{ update = {chain} }}\n"
            ),
        )
        .unwrap();
        let d = dir.to_str().unwrap();
        let out = anneal(&[
            "export",
            recipe.to_str().unwrap(),
            "-o",
            d,
            "--reference",
            "5",
        ]);
        assert!(
            out.status.success(),
            "{chain}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let main = dir.join("main.c");
        let name = format!("lib{k}");
        std::fs::write(
            &main,
            harness(&name).replace("#define STEPS 10", "#define STEPS 5"),
        )
        .unwrap();
        let run = build_and_run(&dir, &main, &name, &dir.join("main"));
        assert!(
            run.status.success(),
            "{chain}: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
