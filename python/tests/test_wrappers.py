"""`cautious(...)` and `mars(...)` wrapping an optimizer, against pytorch_optimizer 4.1's
own `cautious=True` and `MARS`, run in the same test on the same gradients."""

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


def train(ours: torch.nn.Module, opt, ref: torch.nn.Module, topt, steps: int = 12) -> None:
    g = torch.Generator().manual_seed(5)
    for _ in range(steps):
        x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
        for m, o in ((ours, opt), (ref, topt)):
            o.zero_grad()
            F.cross_entropy(m(x), y).backward()
            o.step()


def assert_close(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa, pb, rtol=2e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


CAUTIOUS_LION = """import std.research.{cautious}
import std.optax.{lion}
recipe r { update = cautious(optimizer: lion(learning_rate: 1e-2, weight_decay: 0)) }"""


@pytest.mark.parametrize("backend", ["cranelift", "llvm", "interp"])
def test_cautious_lion_matches_pytorch_optimizer(backend):
    ours, ref = net(), net()
    opt = Optimizer(ours.named_parameters(), CAUTIOUS_LION, backend=backend)
    topt = pytorch_optimizer.Lion(ref.parameters(), lr=1e-2, betas=(0.9, 0.99), cautious=True)
    train(ours, opt, ref, topt)
    assert_close(ours, ref)
    # The mask does something: plain Lion ends elsewhere.
    plain = net()
    popt = pytorch_optimizer.Lion(plain.parameters(), lr=1e-2, betas=(0.9, 0.99))
    train(net(), torch.optim.SGD(net().parameters(), lr=0.0), plain, popt)
    assert not torch.allclose(plain[0].weight, ref[0].weight, atol=1e-4)


MARS_ADAMW = """import std.research.{mars}
import std.optax.{adamw}
recipe r { update = mars(b1: 0.95, gamma: 0.025,
                         optimizer: adamw(learning_rate: 3e-3, b1: 0.95, b2: 0.99, eps: 1e-12,
                                          weight_decay: 0)) }"""


@pytest.mark.parametrize("backend", ["cranelift", "llvm", "interp"])
def test_mars_adamw_matches_pytorch_optimizer(backend):
    ours, ref = net(), net()
    opt = Optimizer(ours.named_parameters(), MARS_ADAMW, backend=backend)
    # optimize_1d: the correction on every tensor (by default MARS leaves vectors to AdamW);
    # eps tiny, since pytorch_optimizer adds it before the bias correction and optax after.
    topt = pytorch_optimizer.MARS(
        ref.parameters(), lr=3e-3, betas=(0.95, 0.99), gamma=0.025, optimize_1d=True, weight_decay=0.0, eps=1e-12
    )
    train(ours, opt, ref, topt)
    assert_close(ours, ref)


@pytest.mark.parametrize("recipe", [CAUTIOUS_LION, MARS_ADAMW], ids=["cautious", "mars"])
def test_a_wrapped_optimizer_resumes_bit_identically(recipe):
    g = torch.Generator().manual_seed(7)
    data = [(torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(8)]

    def run(model, opt, part):
        for x, y in part:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

    straight, first, resumed = net(), net(), net(seed=9)
    opt = Optimizer(straight.named_parameters(), recipe)
    run(straight, opt, data)
    opt1 = Optimizer(first.named_parameters(), recipe)
    run(first, opt1, data[:3])
    resumed.load_state_dict(first.state_dict())
    opt2 = Optimizer(resumed.named_parameters(), recipe)
    opt2.load_state_dict(opt1.state_dict())
    run(resumed, opt2, data[3:])
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
