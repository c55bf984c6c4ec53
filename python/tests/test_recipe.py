"""anneal.load / anneal.compile: checked recipes and their diagnostics."""

from __future__ import annotations

import random
import subprocess

import pytest

import anneal
from conftest import ROOT, anneal_binary

ADAMW = """
import std.torch.{AdamW, clip_grad_norm_, StepLR}

recipe small {
  steps 100
  schedule lr = StepLR(base_lr: 0.01, step_size: 10, gamma: 0.5)
  groups {
    decay    = "*.weight" except "*norm*"
    no_decay = rest
  }
  update = clip_grad_norm_(max_norm: 1.0)
        |> AdamW(lr: lr, weight_decay: { decay: 0.1, no_decay: 0.0 })
}
"""


def test_compile_reports_name_steps_groups_and_capabilities():
    r = anneal.compile(ADAMW)
    assert r.name == "small"
    assert r.steps == 100
    assert r.groups == ["decay", "no_decay"]
    assert r.capabilities == []
    assert r.param_dtype == "f32"
    assert "pass" in r.explain()
    assert len(r.hash) == 16


def test_load_reads_the_files_the_cli_reads():
    r = anneal.load(ROOT / "examples" / "quickstart.anneal")
    assert r.name == "gpt_pretrain"
    assert r.groups == ["decay", "no_decay"]
    assert anneal.as_recipe(str(ROOT / "examples" / "quickstart.anneal")).name == "gpt_pretrain"


def test_capabilities_name_what_the_step_needs():
    sam = anneal.compile("import std.torch.{SAM, SGD}\nrecipe s { update = SAM(rho: 0.05) |> SGD(lr: 0.1) }")
    assert sam.capabilities == ["grad_at"]


BAD = """import std.torch.{Adam}

recipe r {
  update = Adam(lr: 1e-3, betas: [1.0, 0.999], epss: 1e-8)
}
"""


def test_errors_are_the_cli_report_and_data(tmp_path):
    f = tmp_path / "bad.anneal"
    f.write_text(BAD)
    with pytest.raises(anneal.RecipeError) as info:
        anneal.load(f)
    err = info.value
    assert isinstance(err, ValueError)
    cli = subprocess.run([anneal_binary(), "check", str(f)], capture_output=True, text=True)
    assert cli.returncode == 1
    # The same rendered diagnostics `anneal check` prints (it adds a summary line).
    assert str(err).strip() in (cli.stdout + cli.stderr)
    codes = [d["code"] for d in err.diagnostics]
    assert len(codes) >= 2, err.diagnostics
    for d in err.diagnostics:
        assert set(d) >= {"code", "message", "file", "line", "column", "help"}
        assert d["file"] == str(f)
        assert d["line"] == 4
    assert any("epss" in d["message"] for d in err.diagnostics)


def test_picking_a_recipe_by_name():
    two = "import std.torch.{SGD}\nrecipe a { update = SGD(lr: 0.1) }\nrecipe b { update = SGD(lr: 0.2) }"
    with pytest.raises(anneal.RecipeError, match="2 recipes"):
        anneal.compile(two)
    assert anneal.compile(two, name="b").name == "b"
    with pytest.raises(anneal.RecipeError, match="no recipe `c`"):
        anneal.compile(two, name="c")
    with pytest.raises(anneal.RecipeError, match="no recipe"):
        anneal.compile("import std.torch.{SGD}\n")


def test_bad_arguments_are_python_errors(tmp_path):
    with pytest.raises(TypeError):
        anneal.compile(b"recipe")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        anneal.load(tmp_path / "missing.anneal")
    (tmp_path / "latin1.anneal").write_bytes(b"recipe \xff {}")
    with pytest.raises(anneal.RecipeError, match="UTF-8"):
        anneal.load(tmp_path / "latin1.anneal")


def test_random_text_never_crashes_the_interpreter():
    rng = random.Random(7)
    pieces = [
        "recipe",
        "r",
        "{",
        "}",
        "update",
        "=",
        "|>",
        "AdamW(",
        ")",
        "lr:",
        "0.1",
        ",",
        "import",
        "std.torch.{AdamW}",
        "groups",
        '"*"',
        "rest",
        "schedule",
        "steps",
        "1e400",
        "\n",
        "\x00",
        "é",
    ]
    for _ in range(300):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        try:
            anneal.compile(text)
        except anneal.RecipeError as e:
            assert str(e)
