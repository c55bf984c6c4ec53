"""python -m anneal.conformance on the golden torch cases and training runs."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import conformance_dir


def test_every_torch_case_and_training_run_passes_through_torch():
    root = conformance_dir()
    out = subprocess.run(
        [sys.executable, "-m", "anneal.conformance", str(root / "cases" / "torch"), str(root / "train")],
        capture_output=True,
        text=True,
    )
    lines = out.stdout.strip().splitlines()
    failures = [line for line in lines if line.startswith("FAIL")]
    assert not failures, "\n".join(failures)
    assert lines[-1] == "78 passed, 0 failed"
    assert out.returncode == 0


def test_the_optax_and_formula_cases_pass_through_torch_too():
    # Their recipes use Optax's semantics; the runner steps them on torch tensors alike.
    root = conformance_dir()
    out = subprocess.run(
        [sys.executable, "-m", "anneal.conformance", str(root / "cases" / "optax"), str(root / "cases" / "formula")],
        capture_output=True,
        text=True,
    )
    lines = out.stdout.strip().splitlines()
    assert not [line for line in lines if line.startswith("FAIL")]
    assert lines[-1].endswith(" passed, 0 failed") and int(lines[-1].split()[0]) >= 70


def test_the_modern_cases_pass_through_torch_but_the_matrix_optimizers():
    # Muon and Shampoo need matrix values (issue #19); every other modern case passes,
    # polyak_sgd reading the loss from the closure.
    root = conformance_dir()
    out = subprocess.run(
        [sys.executable, "-m", "anneal.conformance", str(root / "modern")],
        capture_output=True,
        text=True,
    )
    lines = out.stdout.strip().splitlines()
    failures = [line for line in lines if line.startswith("FAIL")]
    matrix = ("contrib.muon/", "torch/Muon/", "pytorch_optimizer/Shampoo/")
    assert [f for f in failures if not any(m in f for m in matrix)] == []
    passed = int(lines[-1].split()[0])
    assert passed >= 38
    assert "PASS optax/polyak_sgd/quadratic" in lines


def test_json_report_and_a_broken_case(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x/y", "kind": "optimizer", "module": "torch"}')
    junk = tmp_path / "junk.json"
    junk.write_text("not json")
    out = subprocess.run(
        [sys.executable, "-m", "anneal.conformance", str(tmp_path), "--json"], capture_output=True, text=True
    )
    report = json.loads(out.stdout)
    assert report["passed"] == 0 and report["failed"] == 2
    assert all(c["message"] for c in report["cases"])
    assert out.returncode == 1
    missing = subprocess.run(
        [sys.executable, "-m", "anneal.conformance", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
