"""The Triton back end: the golden cases through Triton's interpreter, agreement with the
CPU back ends on real ``nn.Module``s, and every kernel compiled for NVIDIA GPUs (Triton's
compiler and ptxas run without a GPU). The interpreter checks the kernels' semantics,
not their speed."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import anneal
from anneal.torch import Optimizer
from anneal.triton import compile_for_gpu, module_of
from conftest import conformance_dir


def _passed(paths, backend):
    out = subprocess.run(
        [sys.executable, "-m", "anneal.conformance", "--backend", backend, *map(str, paths)],
        capture_output=True,
        text=True,
    )
    lines = out.stdout.strip().splitlines()
    assert lines and lines[-1].endswith(" failed"), out.stdout + out.stderr
    return {line.split()[1] for line in lines if line.startswith("PASS")}, lines


def test_every_case_that_passes_on_cranelift_passes_through_triton():
    root = conformance_dir()
    paths = [root / "cases", root / "modern"]
    triton, lines = _passed(paths, "triton")
    cranelift, _ = _passed(paths, "cranelift")
    assert cranelift, "no case passed on cranelift"
    assert triton == cranelift, "\n".join(line for line in lines if line.startswith("FAIL"))
    # The matrix optimizers (host matrix rounds between Triton passes) are among them.
    assert "torch/Muon/quadratic_20" in triton


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(37, 300), torch.nn.Tanh(), torch.nn.Linear(300, 3))


RECIPES = {
    "clip_adamw": """import std.optax.{adamw, clip_by_global_norm}
recipe r { update = clip_by_global_norm(max_norm: 0.05) |> adamw(learning_rate: 0.01, weight_decay: 0.1) }""",
    "lamb": """import std.optax.{lamb}
recipe r { update = lamb(learning_rate: 0.01, weight_decay: 0.01) }""",
    # pow, exp, log, tanh and a maximum: the interpreter's libm stand-ins.
    "transcendental": """optimizer odd(learning_rate: real = 0.01) {
  state m = 0
  m = 0.9 * m + tanh(grad * 30) * exp(-abs(grad)) + log(1 + abs(grad) ^ 1.5) * grad / max(abs(grad), 1e-3)
  param -= learning_rate * (m + 0.01 * cos(param) * sin(grad))
}
recipe r { update = odd(learning_rate: 0.01) }""",
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_triton_steps_agree_with_cranelift_on_an_mlp(name):
    # 11,100 weights in the first layer: several programs per tensor, so partials from
    # more than one program are combined.
    model = _mlp(0)
    other = copy.deepcopy(model)
    a = Optimizer(model.named_parameters(), RECIPES[name], backend="triton", threads=1)
    b = Optimizer(other.named_parameters(), RECIPES[name], backend="cranelift", threads=1)
    assert a.backend == "triton"
    torch.manual_seed(1)
    x, y = torch.randn(64, 37), torch.randn(64, 3)
    for _ in range(4):
        for m, opt in ((model, a), (other, b)):
            opt.zero_grad()
            F.mse_loss(m(x), y).backward()
            opt.step()
    for (n, p), (_, q) in zip(model.named_parameters(), other.named_parameters()):
        # Same operations in f32; the interpreter's exp/log/tanh are NumPy's, not glibc's.
        torch.testing.assert_close(p, q, rtol=2e-6, atol=1e-7, msg=f"{name}: {n}")
    # The states PyTorch sees agree too: within a few f32 ulps of values near 1 (a last
    # bit of NumPy's tanh against glibc's is carried by the momentum).
    for sa, sb in zip(a.state_dict()["state"].values(), b.state_dict()["state"].values()):
        for key in sa:
            if isinstance(sa[key], torch.Tensor):
                torch.testing.assert_close(sa[key], sb[key], rtol=2e-6, atol=1e-6)


def test_a_skipped_step_leaves_parameters_and_states_as_they_were():
    src = """import std.optax.{adamw}
transform finite_only() {
  skip if not all_finite(grad, global)
}
recipe r { update = finite_only() |> adamw(learning_rate: 0.1) }"""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = Optimizer([w], src, backend="triton")
    w.grad = torch.tensor([0.5, 0.5, 0.5])
    opt.step()
    after_one = w.detach().clone()
    w.grad = torch.tensor([0.5, float("nan"), 0.5])
    opt.step()
    assert torch.equal(w.detach(), after_one)


def test_a_recipe_without_a_fused_step_is_refused_with_the_reason():
    src = """import std.torch.{LBFGS}
recipe r { update = LBFGS(lr: 1.0) }"""
    w = torch.nn.Parameter(torch.zeros(2))
    try:
        opt = Optimizer([w], src, backend="triton")
    except anneal.StepError as e:
        assert "triton" in str(e)
    else:
        # A builtin optimizer runs the same on every back end.
        assert opt.backend == "builtin"


def _kernels(src):
    source, passes = module_of(src)
    return source, passes, compile_for_gpu(source, passes, arch=90)


def test_every_kernel_compiles_for_an_h100_and_an_a100():
    root = conformance_dir()
    seen = set()
    for path in anneal._native.case_files([str(root / "cases"), str(root / "modern")]):
        try:
            source, passes = module_of(anneal._native.case_recipe(path))
        except (anneal.StepError, anneal.RecipeError):
            continue  # no fused step: the interpreter runs it on every back end
        if source in seen:
            continue
        seen.add(source)
        for arch in (80, 90):
            ptx = compile_for_gpu(source, passes, arch=arch)
            assert set(ptx) == {p["name"] for p in passes}
    # Hyperparameters are scalars, so cases differing only in them share their kernels.
    assert len(seen) >= 40


def test_gpu_code_uses_ieee_division_and_square_root_and_no_contraction():
    _, _, ptx = _kernels(RECIPES["clip_adamw"])
    text = "\n".join(ptx.values())
    ops = set(re.findall(r"\b((?:div|sqrt|fma|rcp)\.[a-z.]+f32)", text))
    assert "div.rn.f32" in ops and "sqrt.rn.f32" in ops, ops
    assert not [op for op in ops if "approx" in op or op.startswith("fma")], ops


def test_gpu_code_calls_libdevice_for_the_c_library():
    source, _, ptx = _kernels(RECIPES["transcendental"])
    assert "libdevice.tanh" in source
    # libdevice's tanh and pow are inlined: no call is left, and no approximate tanh.
    assert not re.search(r"tanh\.approx", "\n".join(ptx.values()))
