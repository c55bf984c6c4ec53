#!/usr/bin/env python3
"""The modern catalogue side by side: the digits MLP trained by each recipe of this folder
(AdamW + cosine, schedule-free AdamW, Prodigy, ADOPT, AdEMAMix) over several seeds, through
`anneal run`. Prints a Markdown table (test accuracy, late training loss, steps to 95%
test accuracy; mean ± sample standard deviation over the seeds) and writes the loss curves
of the first seed with `anneal plot`.

    python3 examples/modern/compare.py            # 3 seeds, 440 steps, ./modern-out/
    python3 examples/modern/compare.py --seeds 5 --out /tmp/modern

Only the standard library is needed, and the `anneal` binary (target/release, target/debug
or PATH; or --anneal)."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# The baseline first; then the order of the issue that asked for the comparison.
RECIPES = ["adamw_cosine", "schedule_free_adamw", "prodigy", "adopt", "ademamix"]
EVAL_EVERY = 20
TARGET = 0.95


def find_anneal(given: str | None) -> str:
    if given:
        return given
    for profile in ("release", "debug"):
        p = ROOT / "target" / profile / "anneal"
        if p.exists():
            return str(p)
    found = shutil.which("anneal")
    if not found:
        sys.exit("compare.py: no anneal binary: build it (cargo build --release) or pass --anneal")
    return found


def run(anneal: str, recipe: str, seed: int, steps: int | None, metrics: Path) -> dict:
    """One training run; its summary and what its metrics file says."""
    cmd = [anneal, "run", str(HERE / f"{recipe}.anneal"), "--json", "--seed", str(seed)]
    cmd += ["--eval-every", str(EVAL_EVERY), "--metrics", str(metrics)]
    if steps is not None:
        cmd += ["--steps", str(steps)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"compare.py: {' '.join(cmd)} failed:\n{done.stderr}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in rows]
    tail = losses[-max(1, len(losses) // 10) :]
    reached = [r["step"] + 1 for r in rows if r.get("test_accuracy", 0.0) >= TARGET]
    return {
        "accuracy": summary["test_accuracy"],
        "late_loss": statistics.fmean(tail),
        "to_target": reached[0] if reached else None,
    }


def spread(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 1..N (default 3)")
    ap.add_argument("--steps", type=int, help="override the recipes' `steps 440`")
    ap.add_argument("--out", type=Path, default=Path("modern-out"), help="metrics and plot folder")
    ap.add_argument("--anneal", help="the anneal binary")
    args = ap.parse_args()
    if args.seeds < 1:
        sys.exit("compare.py: --seeds must be at least 1")
    anneal = find_anneal(args.anneal)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"| recipe | test accuracy | training loss, last 10% of steps | steps to {TARGET:.0%} test accuracy |")
    print("|---|---|---|---|")
    firsts = []
    for recipe in RECIPES:
        results = []
        for seed in range(1, args.seeds + 1):
            metrics = args.out / f"{recipe}-seed{seed}.jsonl"
            results.append(run(anneal, recipe, seed, args.steps, metrics))
            if seed == 1:
                firsts.append(metrics)
        reached = [r["to_target"] for r in results if r["to_target"] is not None]
        to_target = spread([float(s) for s in reached], 0) if reached else "never"
        if reached and len(reached) < len(results):
            to_target += f" ({len(reached)} of {len(results)} seeds)"
        print(
            f"| `{recipe}` | {spread([r['accuracy'] for r in results], 4)} "
            f"| {spread([r['late_loss'] for r in results], 4)} | {to_target} |"
        )
    plot = args.out / "loss.png"
    subprocess.run([anneal, "plot", *map(str, firsts), "--metric", "loss", "-o", str(plot)], check=True)
    print(f"\nloss curves (seed 1): {plot}")


if __name__ == "__main__":
    main()
