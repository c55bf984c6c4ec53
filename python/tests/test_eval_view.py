"""Optimizer.eval()/train(): schedule-free's evaluation view on an nn.Module, against
schedule-free SGD written out here from Defazio et al. 2024 (constant learning rate,
c_t = 1/t): y = (1 − β) z + β x, z ← z − γ ∇f(y), x ← (1 − c) x + c z."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anneal.torch import Optimizer

torch.set_num_threads(1)

LR, B1, STEPS = 0.1, 0.9, 8
RECIPE = f"""import std.optax.{{schedule_free_sgd}}
recipe r {{ update = schedule_free_sgd(learning_rate: {LR}, b1: {B1}) }}"""


def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def data():
    g = torch.Generator().manual_seed(2)
    return [(torch.randn(12, 4, generator=g), torch.randint(0, 2, (12,), generator=g)) for _ in range(STEPS)]


def by_hand():
    """The paper's iterates (y, x) after STEPS steps, in float64."""
    model = net().double()
    z = [p.detach().clone() for p in model.parameters()]
    x = [p.detach().clone() for p in model.parameters()]
    for t, (xs, ys) in enumerate(data(), start=1):
        model.zero_grad()
        F.cross_entropy(model(xs.double()), ys).backward()
        c = 1.0 / t
        with torch.no_grad():
            for p, zi, xi in zip(model.parameters(), z, x):
                zi -= LR * p.grad
                xi.mul_(1 - c).add_(c * zi)
                p.copy_((1 - B1) * zi + B1 * xi)
    return [p.detach() for p in model.parameters()], x


@pytest.mark.parametrize("backend", ["cranelift", "llvm", "interp"])
def test_eval_moves_to_the_average_and_train_moves_back(backend):
    model = net()
    opt = Optimizer(model.named_parameters(), RECIPE, backend=backend)
    for xs, ys in data():
        opt.zero_grad()
        F.cross_entropy(model(xs), ys).backward()
        opt.step()
    y_want, x_want = by_hand()
    y = [p.detach().clone() for p in model.parameters()]
    for a, b in zip(y, y_want):
        torch.testing.assert_close(a, b.float(), rtol=1e-5, atol=1e-6)
    opt.eval()
    for p, b in zip(model.parameters(), x_want):
        torch.testing.assert_close(p.detach(), b.float(), rtol=1e-5, atol=1e-6)
    opt.eval()  # twice is once
    with pytest.raises(RuntimeError, match=r"opt\.train\(\)"):
        opt.step()
    opt.train()
    for p, a in zip(model.parameters(), y):
        assert torch.equal(p.detach(), a)


def test_eval_and_train_leave_the_run_as_it_was():
    runs = []
    for peek in (False, True):
        model = net()
        opt = Optimizer(model.named_parameters(), RECIPE)
        for xs, ys in data():
            opt.zero_grad()
            F.cross_entropy(model(xs), ys).backward()
            opt.step()
            if peek:
                opt.eval()
                opt.train()
        runs.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_a_recipe_without_a_view_evaluates_its_parameters():
    model = net()
    opt = Optimizer(model.named_parameters(), "import std.optax.{sgd}\nrecipe r { update = sgd(learning_rate: 0.1) }")
    before = [p.detach().clone() for p in model.parameters()]
    opt.eval()
    for p, a in zip(model.parameters(), before):
        assert torch.equal(p.detach(), a)
    opt.train()
    opt.step()
