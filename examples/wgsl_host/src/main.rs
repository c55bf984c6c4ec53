//! `anneal-wgsl-host DIR STEPS [REFERENCE]`: runs STEPS steps of the reference problem
//! with the step `anneal export --target wgsl -o DIR` wrote, prints the first parameters
//! after each step and, given the REFERENCE file of `--reference`, checks every value
//! against the interpreter's (|got − want| ≤ 1e-5·(|want| + largest |want| of the step)).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(steps)) = (args.first(), args.get(1).and_then(|s| s.parse().ok())) else {
        eprintln!("usage: anneal-wgsl-host DIR STEPS [REFERENCE]");
        return ExitCode::from(2);
    };
    let runs = match anneal_wgsl_host::run_reference(&PathBuf::from(dir), steps) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (k, p) in runs.iter().enumerate() {
        let head: Vec<String> = p[0].iter().map(|x| format!("{x:.6}")).collect();
        println!("step {}: tensor 0 = [{}]", k + 1, head.join(", "));
    }
    let Some(reference) = args.get(2) else {
        return ExitCode::SUCCESS;
    };
    let text = match std::fs::read_to_string(reference) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {reference}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut want: Vec<(usize, usize, usize, f32)> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [k, t, i, x] = f[..] {
            if let (Ok(k), Ok(t), Ok(i), Ok(x)) = (k.parse(), t.parse(), i.parse(), x.parse()) {
                want.push((k, t, i, x));
            }
        }
    }
    let mut bad = 0;
    let mut checked = 0;
    for k in 1..=steps {
        let scale = want
            .iter()
            .filter(|w| w.0 == k)
            .fold(0f32, |m, w| m.max(w.3.abs()));
        for &(_, t, i, x) in want.iter().filter(|w| w.0 == k) {
            let got = runs[k - 1].get(t).and_then(|p| p.get(i)).copied();
            checked += 1;
            match got {
                Some(g) if (g - x).abs() <= 1e-5 * (x.abs() + scale) => {}
                other => {
                    if bad < 5 {
                        eprintln!("step {k} tensor {t} element {i}: got {other:?}, want {x}");
                    }
                    bad += 1;
                }
            }
        }
    }
    if checked == 0 {
        eprintln!("error: {reference} has no values for these steps");
        return ExitCode::FAILURE;
    }
    println!("{} passed, {bad} failed", checked - bad);
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
