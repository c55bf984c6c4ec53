"""Shared helpers for the Python package's tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT.parent / "shared" / "conformance"


def anneal_binary() -> str:
    """The `anneal` CLI the test command built (debug or release), or on PATH."""
    for profile in ("debug", "release"):
        p = ROOT / "target" / profile / "anneal"
        if p.exists():
            return str(p)
    found = shutil.which("anneal")
    if found:
        return found
    pytest.fail("the anneal binary is not built: run `cargo build -p anneal` first")


def conformance_dir() -> Path:
    if not CONFORMANCE.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"golden cases not found at {CONFORMANCE} (shared/ must sit beside the checkout)")
        pytest.skip(f"golden cases not found at {CONFORMANCE}")
    return CONFORMANCE
