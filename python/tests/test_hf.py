"""std.hf's schedules against Hugging Face transformers' own, run in the test: the same
schedule drives anneal.torch.Optimizer and transformers' LambdaLR over torch.optim.SGD,
and the learning rates of every step (past the end of training too) must agree."""

from __future__ import annotations

import pytest
import torch
import transformers

import anneal
from anneal.torch import Optimizer

STEPS = 40

# (transformers function, its keyword arguments); base_lr is the optimizer's lr there.
CASES = [
    ("get_constant_schedule", {}),
    ("get_constant_schedule_with_warmup", {"num_warmup_steps": 7}),
    ("get_constant_schedule_with_warmup", {"num_warmup_steps": 0}),
    ("get_linear_schedule_with_warmup", {"num_warmup_steps": 5, "num_training_steps": 30}),
    ("get_linear_schedule_with_warmup", {"num_warmup_steps": 0, "num_training_steps": 12}),
    ("get_cosine_schedule_with_warmup", {"num_warmup_steps": 4, "num_training_steps": 33}),
    ("get_cosine_schedule_with_warmup", {"num_warmup_steps": 3, "num_training_steps": 25, "num_cycles": 1.5}),
    ("get_cosine_with_hard_restarts_schedule_with_warmup", {"num_warmup_steps": 2, "num_training_steps": 35}),
    (
        "get_cosine_with_hard_restarts_schedule_with_warmup",
        {"num_warmup_steps": 0, "num_training_steps": 30, "num_cycles": 3},
    ),
    ("get_polynomial_decay_schedule_with_warmup", {"num_warmup_steps": 5, "num_training_steps": 30}),
    (
        "get_polynomial_decay_schedule_with_warmup",
        {"num_warmup_steps": 2, "num_training_steps": 20, "lr_end": 1e-3, "power": 2.5},
    ),
    ("get_inverse_sqrt_schedule", {"num_warmup_steps": 6}),
    ("get_inverse_sqrt_schedule", {"num_warmup_steps": 4, "timescale": 9}),
    ("get_inverse_sqrt_schedule", {"num_warmup_steps": 0}),
    (
        "get_cosine_with_min_lr_schedule_with_warmup",
        {"num_warmup_steps": 5, "num_training_steps": 30, "min_lr_rate": 0.1},
    ),
    (
        "get_cosine_with_min_lr_schedule_with_warmup",
        {"num_warmup_steps": 3, "num_training_steps": 28, "min_lr": 2e-3, "num_cycles": 0.75},
    ),
    ("get_wsd_schedule", {"num_warmup_steps": 5, "num_decay_steps": 10, "num_training_steps": 30}),
    (
        "get_wsd_schedule",
        {
            "num_warmup_steps": 6,
            "num_decay_steps": 9,
            "num_stable_steps": 11,
            "warmup_type": "1-sqrt",
            "decay_type": "linear",
            "min_lr_ratio": 0.05,
        },
    ),
    (
        "get_wsd_schedule",
        {
            "num_warmup_steps": 4,
            "num_decay_steps": 12,
            "num_training_steps": 25,
            "warmup_type": "cosine",
            "decay_type": "1-sqrt",
            "min_lr_ratio": 0.2,
        },
    ),
    (
        "get_wsd_schedule",
        {"num_warmup_steps": 3, "num_decay_steps": 10, "num_stable_steps": 5, "num_cycles": 1.25},
    ),
]


def literal(v: object) -> str:
    return f'"{v}"' if isinstance(v, str) else repr(v)


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_std_hf_follows_transformers(name: str, kwargs: dict) -> None:
    base_lr = 0.03
    args = ", ".join([f"base_lr: {base_lr}"] + [f"{k}: {literal(v)}" for k, v in kwargs.items()])
    recipe = f"""import std.hf.{{{name}}}
import std.torch.{{SGD}}
recipe r {{
  schedule lr = {name}({args})
  update = SGD(lr: lr)
}}"""
    ours = torch.zeros(3, requires_grad=True)
    ref = torch.zeros(3, requires_grad=True)
    opt = Optimizer([ours], recipe)
    topt = torch.optim.SGD([ref], lr=base_lr)
    sched = getattr(transformers, name)(topt, **kwargs)
    for step in range(STEPS):
        want = topt.param_groups[0]["lr"]
        got = opt.param_groups[0]["lr"]
        assert got == pytest.approx(want, rel=1e-12, abs=1e-18), f"step {step}: {got} != {want}"
        for p in (ours, ref):
            p.grad = torch.ones(3)
        opt.step()
        topt.step()
        sched.step()
    assert torch.equal(ours.detach(), ref.detach())


@pytest.mark.parametrize(
    "call,message",
    [
        ("get_wsd_schedule(base_lr: 0.1, num_warmup_steps: 2, num_decay_steps: 5)", "num_stable_steps"),
        (
            "get_cosine_with_min_lr_schedule_with_warmup(base_lr: 0.1, num_warmup_steps: 1, num_training_steps: 9)",
            "one of min_lr or min_lr_rate should be set",
        ),
        (
            "get_cosine_with_min_lr_schedule_with_warmup(base_lr: 0.1, num_warmup_steps: 1, "
            "num_training_steps: 9, min_lr: 0.01, min_lr_rate: 0.1)",
            "only one of min_lr or min_lr_rate",
        ),
        (
            "get_polynomial_decay_schedule_with_warmup(base_lr: 1e-8, num_warmup_steps: 1, num_training_steps: 9)",
            "lr_end must be smaller",
        ),
    ],
)
def test_std_hf_refuses_what_transformers_refuses(call: str, message: str) -> None:
    name = call.split("(")[0]
    recipe = f"import std.hf.{{{name}}}\nimport std.torch.{{SGD}}\nrecipe r {{ update = SGD(lr: {call}) }}"
    with pytest.raises(anneal.RecipeError, match=message):
        anneal.compile(recipe)
