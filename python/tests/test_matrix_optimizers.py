"""Matrix optimizers on a real `nn.Module`, against their own libraries run in the same
test on the same batches: pytorch_optimizer 4.1's `Shampoo` (its keywords beyond the
golden cases: refresh period, decoupled and fixed decay, maximize, momentum), on every
CPU back end; and the numbers recipes compute from matrices (`spectral_norm`,
`frobenius_norm`, `matrix_trace`) against `torch.linalg`.

The reference runs in float64. Shampoo's roots of the smallest eigenvalues (≈ matrix_eps)
amplify rounding, and momentum feeds the update back in: after 15 steps the package's own
float32 run is 9e-4 from its float64 run where anneal (float32 entries, float64
eigendecomposition) is 1.7e-4 from it."""

from __future__ import annotations

import pytest
import pytorch_optimizer
import torch
import torch.nn.functional as F

from anneal.torch import Optimizer

torch.set_num_threads(1)


def net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def train(ours: torch.nn.Module, opt, ref: torch.nn.Module, topt, steps: int) -> None:
    g = torch.Generator().manual_seed(5)
    for _ in range(steps):
        x, y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
        for m, o in ((ours, opt), (ref, topt)):
            o.zero_grad()
            F.cross_entropy(m(x.to(next(m.parameters()).dtype)), y).backward()
            o.step()


def shampoo_recipe(kw: dict) -> str:
    args = ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in kw.items())
    return f"import std.pytorch_optimizer.{{Shampoo}}\nrecipe r {{ update = Shampoo({args}) }}"


# Shampoo with momentum feeds the update (amplified up to matrix_eps^(-1/p) along
# directions the gradients have not spanned yet) back in as gradient, and can be chaotic in
# exact arithmetic: with momentum 0.5 and matrix_eps 1e-3 on this model, the package's own
# float64 runs from weights 1e-10 apart end 1.4e-2 apart after 15 steps. The momentum cases
# here are ones where they end within 1e-10.
SHAMPOO = [
    {"lr": 1e-2},
    {"lr": 1e-2, "momentum": 0.9, "weight_decay": 1e-2, "matrix_eps": 1e-3},
    {"lr": 2e-2, "preconditioning_compute_steps": 3, "matrix_eps": 1e-4},
    {"lr": 1e-2, "weight_decay": 0.1, "weight_decouple": True, "matrix_eps": 1e-3},
    {"lr": 1e-2, "weight_decay": 1e-3, "weight_decouple": True, "fixed_decay": True},
    {"lr": 1e-3, "maximize": True, "momentum": 0.5, "matrix_eps": 1e-1},
]


@pytest.mark.parametrize("backend", ["cranelift", "llvm", "interp"])
@pytest.mark.parametrize("kw", SHAMPOO, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_shampoo_matches_pytorch_optimizer(backend, kw):
    ours, ref = net(), net().double()
    opt = Optimizer(ours.named_parameters(), shampoo_recipe(kw), backend=backend)
    topt = pytorch_optimizer.Shampoo(ref.parameters(), **kw)
    train(ours, opt, ref, topt, steps=15)
    moved = False
    for (name, pa), (_, pb), p0 in zip(ours.named_parameters(), ref.named_parameters(), net().parameters()):
        pb = pb.float()
        torch.testing.assert_close(pa, pb, rtol=1e-3, atol=3e-4, msg=lambda m, n=name: f"{n}: {m}")
        moved |= not torch.allclose(pb, p0, atol=1e-3)
    assert moved


# Numbers from matrices in a recipe, against torch.linalg on the same matrices: each
# update divides the gradient, viewed as a matrix (leading dimensions flattened; a bias is
# one row), by one of them.
MATRIX_NUMBERS = {
    "spectral_norm(G)": lambda g: torch.linalg.matrix_norm(g, ord=2),
    "frobenius_norm(G)": lambda g: torch.linalg.matrix_norm(g, ord="fro"),
    "matrix_trace(G @ transpose(G))": lambda g: torch.trace(g @ g.T),
}


@pytest.mark.parametrize("backend", ["cranelift", "llvm", "interp"])
@pytest.mark.parametrize("number", list(MATRIX_NUMBERS))
def test_numbers_from_matrices_match_torch_linalg(backend, number):
    src = (
        "optimizer o(lr: schedule = 0.05) {\n"
        "  let G = matrix(grad)\n"
        f"  param -= lr * grad / {number}\n"
        "}\n"
        "recipe r { update = o() }"
    )
    ours, ref = net(), net().double()
    opt = Optimizer(ours.named_parameters(), src, backend=backend)

    class Reference(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {})

        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                for p in group["params"]:
                    g = p.grad.reshape(1, -1) if p.grad.dim() < 2 else p.grad.flatten(0, -2)
                    p -= 0.05 * p.grad / MATRIX_NUMBERS[number](g)

    train(ours, opt, ref, Reference(ref.parameters()), steps=5)
    for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a.detach().double(), b.detach(), rtol=1e-5, atol=1e-6, msg=name)
