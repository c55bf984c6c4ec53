"""The Python examples run as the README shows them."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT


def test_the_readme_training_loop_trains_the_digits_mlp():
    out = subprocess.run(
        [sys.executable, "examples/torch_digits.py"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 6, out.stdout
    first = float(re.search(r"loss (\S+)", lines[0]).group(1))
    last = float(re.search(r"loss (\S+)", lines[4]).group(1))
    assert last < first
    accuracy = float(lines[-1].rsplit(" ", 1)[1])
    assert accuracy > 0.9, out.stdout


def test_the_modern_comparison_runs_every_recipe(tmp_path):
    # A short run of examples/modern/compare.py: every recipe trains through `anneal run`,
    # one table row each, and the plot is written.
    from conftest import anneal_binary

    out = subprocess.run(
        [sys.executable, "examples/modern/compare.py", "--seeds", "2", "--steps", "120", "--out", str(tmp_path)]
        + ["--anneal", anneal_binary()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == ["adamw_cosine", "schedule_free_adamw", "prodigy", "adopt", "ademamix"]
    for row in rows:
        accuracy = float(row.split("|")[2].split("±")[0])
        assert accuracy > 0.8, row
    assert (tmp_path / "loss.png").stat().st_size > 0
