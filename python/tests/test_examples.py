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
