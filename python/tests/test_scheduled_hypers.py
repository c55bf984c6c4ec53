"""Schedules on hyperparameters other than the learning rate (β₁, β₂, weight decay),
against torch.optim.AdamW with its param_groups written before every step, which is how
PyTorch users schedule them; the schedules' values are computed here from their formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import anneal
from anneal.torch import Optimizer

torch.set_num_threads(1)

STEPS = 14


def net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))


def linear(init: float, end: float, steps: int, count: int) -> float:
    """optax.linear_schedule at `count` updates made."""
    return init + (end - init) * min(count, steps) / steps


def cosine(init: float, steps: int, count: int) -> float:
    """optax.cosine_decay_schedule with alpha 0."""
    return init * 0.5 * (1 + math.cos(math.pi * min(count, steps) / steps))


def b1(c: int) -> float:
    return linear(0.5, 0.9, 8, c)


def b2(c: int) -> float:
    return 0.999 - linear(0.05, 0.0, 10, c)


def wd(c: int) -> float:
    return cosine(0.2, 12, c)


OPTAX = """import std.optax.{adamw, linear_schedule, cosine_decay_schedule}
recipe r {
  update = adamw(learning_rate: 0.02,
                 b1: linear_schedule(init_value: 0.5, end_value: 0.9, transition_steps: 8),
                 b2: 0.999 - linear_schedule(init_value: 0.05, end_value: 0.0, transition_steps: 10),
                 weight_decay: cosine_decay_schedule(init_value: 0.2, decay_steps: 12))
}"""

TORCH = """import std.torch.{AdamW}
import std.optax.{linear_schedule, cosine_decay_schedule}
recipe r {
  update = AdamW(lr: 0.02,
                 betas: [linear_schedule(init_value: 0.5, end_value: 0.9, transition_steps: 8),
                         0.999 - linear_schedule(init_value: 0.05, end_value: 0.0, transition_steps: 10)],
                 weight_decay: cosine_decay_schedule(init_value: 0.2, decay_steps: 12))
}"""


@pytest.mark.parametrize("recipe", [OPTAX, TORCH], ids=["optax", "torch"])
@pytest.mark.parametrize("backend", ["cranelift", "llvm", "interp"])
def test_scheduled_betas_and_weight_decay_match_torch(recipe, backend):
    ours, ref = net(), net()
    opt = Optimizer(ours.named_parameters(), recipe, backend=backend)
    topt = torch.optim.AdamW(ref.parameters(), lr=0.02, foreach=False)
    g = torch.Generator().manual_seed(3)
    for count in range(STEPS):
        for group in topt.param_groups:
            group["betas"] = (b1(count), b2(count))
            group["weight_decay"] = wd(count)
        x, y = torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)
        for m, o in ((ours, opt), (ref, topt)):
            o.zero_grad()
            F.cross_entropy(m(x), y).backward()
            o.step()
    for (name, a), (_, b) in zip(ours.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    # The schedules are not constants: the same run with β₁ held at its first value differs.
    held = net()
    topt = torch.optim.AdamW(held.parameters(), lr=0.02, betas=(b1(0), b2(0)), weight_decay=wd(0))
    g = torch.Generator().manual_seed(3)
    for _ in range(STEPS):
        x, y = torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)
        topt.zero_grad()
        F.cross_entropy(held(x), y).backward()
        topt.step()
    assert not torch.allclose(held[0].weight, ref[0].weight, rtol=1e-3)


def test_a_schedule_leaving_the_range_stops_at_the_step_it_does():
    recipe = """import std.optax.{adam, linear_schedule}
recipe r { update = adam(learning_rate: 0.01,
                         b1: linear_schedule(init_value: 0.9, end_value: 1.1, transition_steps: 4)) }"""
    w = torch.nn.Parameter(torch.ones(3))
    opt = Optimizer([("w", w)], recipe)
    for _ in range(2):
        w.grad = torch.ones(3)
        opt.step()
    w.grad = torch.ones(3)
    want = r"step 3, `b1` of `scale_by_adam` follows a schedule to 1\S*, outside its range \[0, 1\)"
    with pytest.raises(anneal.StepError, match=want):
        opt.step()


def test_a_recipe_with_steps_is_refused_before_it_runs():
    recipe = """import std.optax.{adam, linear_schedule}
recipe r { steps 10
           update = adam(learning_rate: 0.01,
                         b1: linear_schedule(init_value: 0.9, end_value: 1.1, transition_steps: 4)) }"""
    with pytest.raises(anneal.RecipeError, match=r"its schedule is 1\S* at step 3"):
        Optimizer([("w", torch.nn.Parameter(torch.ones(3)))], recipe)
