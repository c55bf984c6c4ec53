"""SOAP (`std.research.soap`) against two independent sources: pytorch_optimizer 4.1's
`SOAP` run here in float64 (on a real `nn.Module`, every CPU back end), and the float64
NumPy transcription of the paper in `soap_reference.py` — itself checked against
pytorch_optimizer here, and written to the fixture `compiler/tests/soap.rs` runs on every
back end, wgsl included.

The models are regressions on purpose. With cross-entropy over k classes, the last
layer's gradient has columns summing to zero, so 1/√k spans a null direction of G Gᵀ in
which the rotated gradient is rounding noise: in float32 √v there is ~1e-8, as large as
eps, and the element-wise Adam step there is O(1) instead of ~0. The package's own float32
run does the same; this is the ill-conditioning that keeps SOAP out of the golden cases.
A vector with `precondition_1d` is preconditioned by g gᵀ, rank one at the first step:
the eigenbasis of its null space is arbitrary, so no two implementations agree on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytorch_optimizer
import soap_reference as ref
import torch
import torch.nn.functional as F

from anneal.torch import Optimizer

torch.set_num_threads(1)


def package_run(w0: np.ndarray, grads: list[np.ndarray], hp: dict) -> list[np.ndarray]:
    """pytorch_optimizer's SOAP on one float64 tensor, fed `grads` one step at a time."""
    kw = {k: v for k, v in hp.items() if k not in ("b1", "b2")}
    kw["betas"] = (hp.get("b1", 0.95), hp.get("b2", 0.95))
    p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = pytorch_optimizer.SOAP([p], **kw)
    out = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


@pytest.mark.parametrize("case", list(ref.CASES))
def test_the_numpy_transcription_is_pytorch_optimizers_soap(case):
    hp = ref.CASES[case]
    w0, grads = ref.problem(list(ref.CASES).index(case))
    # `c` (rank 3) is left out: the package preconditions each of its dimensions where the
    # transcription, like anneal, flattens it into a matrix.
    for k in ("w", "a", "b", "s"):
        ours, theirs = ref.soap(w0[k], grads[k], **hp), package_run(w0[k], grads[k], hp)
        moved = np.abs(ours[-1] - w0[k]).max()
        assert moved > 1e-4, f"{k} did not move"
        # The package computes each refresh's QR in float32 (then back to float64): the
        # runs part at ~1e-8 from the first refresh on, and exactly agree before it.
        for step, (a, b) in enumerate(zip(ours, theirs), start=1):
            rtol, atol = (1e-12, 1e-14) if step <= hp["precondition_frequency"] + 1 else (1e-6, 1e-8)
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{case} {k} step {step}")


def test_the_committed_fixture_is_what_the_transcription_writes():
    committed = json.loads(ref.FIXTURE.read_text())
    fresh = ref.fixture()
    assert [c["name"] for c in committed["cases"]] == [c["name"] for c in fresh["cases"]]
    for a, b in zip(committed["cases"], fresh["cases"]):
        assert a["hyperparameters"] == b["hyperparameters"]
        for ta, tb in zip(a["tensors"], b["tensors"]):
            for key in ("name", "shape", "init", "grads"):
                assert ta[key] == tb[key], f"{a['name']} {ta['name']} {key}"
            np.testing.assert_allclose(ta["expected"], tb["expected"], rtol=1e-10, atol=1e-13)


def net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Tanh(), torch.nn.Linear(6, 6))


def soap_recipe(kw: dict) -> str:
    args = ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in kw.items())
    return f"import std.research.{{soap}}\nrecipe r {{ update = soap({args}) }}"


# (anneal's keywords, pytorch_optimizer's)
SOAP = [
    ({}, {}),
    ({"learning_rate": 1e-2, "precondition_frequency": 3}, {"lr": 1e-2, "precondition_frequency": 3}),
    (
        {
            "learning_rate": 1e-2,
            "b1": 0.9,
            "b2": 0.99,
            "shampoo_beta": 0.9,
            "weight_decay": 0.1,
            "normalize_gradient": True,
            "precondition_frequency": 2,
        },
        {
            "lr": 1e-2,
            "betas": (0.9, 0.99),
            "shampoo_beta": 0.9,
            "weight_decay": 0.1,
            "normalize_gradient": True,
            "precondition_frequency": 2,
        },
    ),
    (
        {"max_precondition_dim": 4, "maximize": True, "correct_bias": False, "eps": 1e-6},
        {"max_precondition_dim": 4, "maximize": True, "correct_bias": False, "eps": 1e-6},
    ),
]


@pytest.mark.parametrize("backend", ["cranelift", "llvm", "interp"])
@pytest.mark.parametrize("kw", SOAP, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw[0].items()) or "defaults")
def test_soap_matches_pytorch_optimizer_on_a_module(backend, kw):
    ours, theirs = net(), net().double()
    opt = Optimizer(ours.named_parameters(), soap_recipe(kw[0]), backend=backend)
    topt = pytorch_optimizer.SOAP(theirs.parameters(), **kw[1])
    g = torch.Generator().manual_seed(5)
    for _ in range(20):
        x, y = torch.randn(32, 6, generator=g), torch.randn(32, 6, generator=g)
        for m, o in ((ours, opt), (theirs, topt)):
            dtype = next(m.parameters()).dtype
            o.zero_grad()
            F.mse_loss(m(x.to(dtype)), y.to(dtype)).backward()
            o.step()
    for (name, pa), (_, pb), p0 in zip(ours.named_parameters(), theirs.named_parameters(), net().parameters()):
        assert not torch.allclose(pb.float(), p0, atol=1e-2), f"{name} did not move"
        torch.testing.assert_close(pa, pb.float(), rtol=1e-5, atol=2e-6, msg=lambda m, n=name: f"{n}: {m}")
