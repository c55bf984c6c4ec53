"""anneal.torch.Optimizer on real nn.Modules, against torch.optim run in the same test."""

from __future__ import annotations

import copy
import io
import math
import threading

import pytest
import torch
import torch.nn.functional as F

import anneal
from anneal.torch import Optimizer

torch.set_num_threads(1)


class Net(torch.nn.Module):
    """A small model with the parameter names real models have (weights, biases, a norm)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 16)
        self.norm = torch.nn.LayerNorm(16)
        self.fc2 = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.norm(self.fc1(x))))


def make_net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net()


def batches(n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def backward(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss


def assert_close(a: torch.nn.Module, b: torch.nn.Module, rtol: float = 2e-5, atol: float = 1e-6) -> None:
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa, pb, rtol=rtol, atol=atol, msg=lambda m, n=na: f"{n}: {m}")


ADAMW = """import std.torch.{AdamW}
recipe r { update = AdamW(lr: 0.01, betas: [0.9, 0.99], weight_decay: 0.05) }"""


@pytest.mark.parametrize("backend", ["auto", "cranelift", "llvm", "interp"])
def test_adamw_matches_torch_on_a_module(backend):
    ours, ref = make_net(), make_net()
    opt = Optimizer(ours.named_parameters(), ADAMW, backend=backend)
    topt = torch.optim.AdamW(ref.parameters(), lr=0.01, betas=(0.9, 0.99), weight_decay=0.05, foreach=False)
    assert opt.backend == ("cranelift" if backend == "auto" else backend)
    for x, y in batches(12):
        for m, o in ((ours, opt), (ref, topt)):
            o.zero_grad()
            backward(m, x, y)
            o.step()
    assert_close(ours, ref)


def test_step_updates_the_parameters_in_place_without_copying():
    model = make_net()
    opt = Optimizer(model.named_parameters(), ADAMW)
    before = {n: (p.data_ptr(), p.detach().clone()) for n, p in model.named_parameters()}
    view = model.fc1.weight.detach().numpy()  # shares the parameter's memory
    x, y = batches(1)[0]
    backward(model, x, y)
    opt.step()
    for n, p in model.named_parameters():
        assert p.data_ptr() == before[n][0], n
        assert not torch.equal(p.detach(), before[n][1]), n
    assert (view == model.fc1.weight.detach().numpy()).all()


CLIP_GROUPS = """import std.torch.{AdamW, clip_grad_norm_, CosineAnnealingLR}
recipe r {
  schedule lr = CosineAnnealingLR(base_lr: 0.02, T_max: 6)
  groups {
    decay    = "*.weight" except "*norm*"
    no_decay = rest
  }
  update = clip_grad_norm_(max_norm: 0.5)
        |> AdamW(lr: lr, weight_decay: { decay: 0.1, no_decay: 0.0 })
}"""


def test_clip_groups_and_schedule_match_torch():
    ours, ref = make_net(), make_net()
    opt = Optimizer(ours.named_parameters(), CLIP_GROUPS)
    decay = [p for n, p in ref.named_parameters() if n.endswith(".weight") and "norm" not in n]
    rest = [p for n, p in ref.named_parameters() if not (n.endswith(".weight") and "norm" not in n)]
    topt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=0.02, foreach=False
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=6)
    assert [g["name"] for g in opt.param_groups] == ["decay", "no_decay"]
    assert [len(g["params"]) for g in opt.param_groups] == [2, 4]
    for x, y in batches(10):
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([g["lr"] for g in topt.param_groups], rel=1e-12)
        opt.zero_grad()
        topt.zero_grad()
        backward(ours, x, y)
        backward(ref, x, y)
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        opt.step()
        topt.step()
        sched.step()
    assert_close(ours, ref)


def test_the_recipe_owns_the_learning_rate():
    opt = Optimizer(make_net().named_parameters(), CLIP_GROUPS)
    with pytest.raises(AttributeError, match="recipe owns the schedule"):
        opt.param_groups[0]["lr"] = 0.1
    with pytest.raises(ValueError, match="groups"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)]})


def test_plain_iterables_are_named_by_position():
    ps = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2, 2))]
    opt = Optimizer(
        ps,
        'import std.torch.{SGD}\nrecipe r { groups { first = "0" \n others = rest }\n'
        "update = SGD(lr: { first: 0.5, others: 0.1 }) }",
    )
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    assert torch.allclose(ps[0], torch.full((3,), 0.5))
    assert torch.allclose(ps[1], torch.full((2, 2), 0.9))


def test_missing_gradients_leave_that_tensor_and_its_state_alone():
    # As torch does, a parameter whose .grad is None is skipped: it and its states stay.
    # (anneal's step count is the recipe's, shared by every tensor, where torch counts
    # per parameter, so later bias corrections of that tensor differ from torch's.)
    ours, ref = make_net(), make_net()
    opt = Optimizer(ours.named_parameters(), ADAMW)
    topt = torch.optim.AdamW(ref.parameters(), lr=0.01, betas=(0.9, 0.99), weight_decay=0.05, foreach=False)
    data = batches(4)
    for i, (x, y) in enumerate(data):
        if i == len(data) - 1:
            before_p = ours.fc2.bias.detach().clone()
            before_s = {k: v.clone() for k, v in opt.state_dict()["state"][5].items() if k != "step"}
        for m, o in ((ours, opt), (ref, topt)):
            o.zero_grad(set_to_none=True)
            backward(m, x, y)
            if i == len(data) - 1:
                m.fc2.bias.grad = None
            o.step()
    assert torch.equal(ours.fc2.bias.detach(), before_p)
    after_s = opt.state_dict()["state"][5]
    assert before_s and all(torch.equal(after_s[k], v) for k, v in before_s.items())
    assert_close(ours, ref)


def test_closures_for_recipes_that_call_the_model():
    sam = "import std.torch.{SAM, SGD}\nrecipe s { update = SAM(rho: 0.05) |> SGD(lr: 0.1, momentum: 0.9) }"
    model = make_net()
    opt = Optimizer(model.named_parameters(), sam)
    x, y = batches(1)[0]
    backward(model, x, y)
    with pytest.raises(RuntimeError, match="closure"):
        opt.step()

    # SAM by hand (Foret et al. 2021, Algorithm 1), with torch.optim.SGD as the base.
    ref = make_net()
    base = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches(5):

        def closure(x=x, y=y):
            opt.zero_grad()
            return backward(model, x, y)

        opt.step(closure)

        base.zero_grad()
        backward(ref, x, y)
        with torch.no_grad():
            ps = list(ref.parameters())
            norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in ps))
            saved = [p.detach().clone() for p in ps]
            for p in ps:
                p.add_(p.grad * (0.05 / (float(norm) + 1e-12)))
        base.zero_grad()
        backward(ref, x, y)
        with torch.no_grad():
            for p, s in zip(ps, saved):
                p.copy_(s)
        base.step()
    assert_close(model, ref, rtol=1e-4, atol=1e-6)


def test_lbfgs_matches_torch_lbfgs():
    torch.manual_seed(3)
    a = torch.randn(20, 5)
    b = torch.randn(20)
    w0 = torch.randn(5)
    ours = torch.nn.Parameter(w0.clone())
    ref = torch.nn.Parameter(w0.clone())
    recipe = "import std.torch.{LBFGS}\nrecipe l { update = LBFGS(lr: 0.5, max_iter: 5, history_size: 4) }"
    opt = Optimizer([("w", ours)], recipe)
    topt = torch.optim.LBFGS([ref], lr=0.5, max_iter=5, history_size=4)

    def closure_for(w, o):
        def closure():
            o.zero_grad()
            loss = ((a @ w - b) ** 2).mean()
            loss.backward()
            return loss

        return closure

    for _ in range(3):
        lo = opt.step(closure_for(ours, opt))
        lr_ = topt.step(closure_for(ref, topt))
        assert float(lo.detach()) == pytest.approx(float(lr_.detach()), rel=1e-5)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)


def test_hessian_vector_products_come_from_the_closure():
    # A user-defined optimizer that steps by H·g: with L = ½ Σ h_i w_i², the gradient is
    # h·w and the Hessian diag(h), so one step gives w − lr·h²·w exactly.
    recipe = """optimizer hess(lr: real = 0.1) {
  param -= lr * hvp(grad)
}
recipe s { update = hess(lr: 0.01) }"""
    h = torch.tensor([2.0, 4.0, 8.0])
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = Optimizer([("w", w)], recipe)
    assert opt.recipe.capabilities == ["hvp"]

    def plain():
        opt.zero_grad()
        loss = 0.5 * (h * w * w).sum()
        loss.backward()
        return loss

    with pytest.raises(ValueError, match="create_graph"):
        opt.step(plain)

    def differentiable():
        opt.zero_grad(set_to_none=True)
        loss = 0.5 * (h * w * w).sum()
        loss.backward(create_graph=True)
        return loss

    w0 = torch.tensor([1.0, -2.0, 3.0])
    opt.step(differentiable)
    torch.testing.assert_close(w.detach(), w0 - 0.01 * h * h * w0)
    for p in (w,):
        p.grad = None  # break the create_graph reference cycle


GRADSCALER = """import std.torch.{GradScaler, SGD}
recipe g { update = GradScaler(init_scale: 1024, growth_interval: 2) |> SGD(lr: 0.1) }"""


def test_loss_scaling_skips_overflowing_steps_like_grad_scaler():
    w = torch.nn.Parameter(torch.ones(4))
    opt = Optimizer([("w", w)], GRADSCALER)
    ref = torch.nn.Parameter(torch.ones(4))
    topt = torch.optim.SGD([ref], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=2)
    for k in range(7):
        overflow = k in (2, 5)
        factor = math.inf if overflow else 1.0
        opt.zero_grad()
        opt.scale((w * w).sum() * factor).backward()
        before = opt.skipped_steps
        opt.step()
        topt.zero_grad()
        scaler.scale((ref * ref).sum() * factor).backward()
        scaler.step(topt)
        scaler.update()
        assert opt.loss_scale == scaler.get_scale()
        assert (opt.skipped_steps == before + 1) == overflow
        assert opt.metrics["skipped"] == overflow
    assert opt.skipped_steps == 2
    torch.testing.assert_close(w, ref)
    with pytest.raises(RuntimeError, match="GradScaler"):
        Optimizer([("w", torch.nn.Parameter(torch.ones(1)))], ADAMW).scale(torch.tensor(1.0))


def test_observe_drives_reduce_on_plateau():
    recipe = """import std.torch.{SGD, ReduceLROnPlateau}
recipe p { schedule lr = ReduceLROnPlateau(base_lr: 0.1, patience: 1, factor: 0.5)
           update = SGD(lr: lr) }"""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = Optimizer([p], recipe)
    q = torch.nn.Parameter(torch.zeros(1))
    topt = torch.optim.SGD([q], lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, patience=1, factor=0.5)
    for metric in [1.0, 0.9, 0.95, 0.97, 0.96, 0.5, 0.6, 0.7, 0.8]:
        assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"])
        p.grad = torch.ones(1)
        q.grad = torch.ones(1)
        opt.step()
        topt.step()
        opt.observe(metric)
        sched.step(metric)
    assert opt.param_groups[0]["lr"] < 0.1


def test_metrics_report_the_step():
    model = make_net()
    opt = Optimizer(model.named_parameters(), CLIP_GROUPS, track_norms=True)
    x, y = batches(1)[0]
    backward(model, x, y)
    want = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters()))
    opt.step()
    m = opt.metrics
    assert m["lr"] == [pytest.approx(0.02), pytest.approx(0.02)]
    assert m["grad_norm"] == pytest.approx(float(want), rel=1e-5)
    assert set(m["tensor_norms"]) == {n for n, _ in model.named_parameters()}
    assert m["skipped"] is False and m["loss_scale"] is None and m["step"] == 1


def run(model, opt, data):
    for x, y in data:
        opt.zero_grad()
        backward(model, x, y)
        opt.step()


@pytest.mark.parametrize(
    "recipe", [ADAMW, CLIP_GROUPS, GRADSCALER.replace("SGD(lr: 0.1)", "SGD(lr: 0.1, momentum: 0.9)")]
)
def test_resume_from_a_saved_state_is_bit_identical(recipe):
    data = batches(10)
    straight = make_net()
    opt = Optimizer(straight.named_parameters(), recipe)
    run(straight, opt, data)

    first = make_net()
    opt1 = Optimizer(first.named_parameters(), recipe)
    run(first, opt1, data[:4])
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt1.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    resumed = make_net(seed=99)
    resumed.load_state_dict(saved["model"])
    opt2 = Optimizer(resumed.named_parameters(), recipe)
    opt2.load_state_dict(saved["opt"])
    run(resumed, opt2, data[4:])
    for (n, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert torch.equal(a, b), n


def test_state_dict_has_torchs_layout():
    model = make_net()
    opt = Optimizer(model.named_parameters(), ADAMW)
    run(model, opt, batches(2))
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups", "anneal"}
    assert sorted(sd["state"]) == list(range(6))
    st = sd["state"][0]
    assert st["step"] == 2
    keys = [k for k in st if k != "step"]
    assert keys and all(st[k].shape == model.fc1.weight.shape for k in keys)
    assert sum(len(g["params"]) for g in sd["param_groups"]) == 6


def test_states_from_elsewhere_are_refused():
    model = make_net()
    opt = Optimizer(model.named_parameters(), ADAMW)
    run(model, opt, batches(1))
    sd = opt.state_dict()
    other = Optimizer(make_net().named_parameters(), CLIP_GROUPS)
    with pytest.raises(ValueError, match="another recipe|not this recipe"):
        other.load_state_dict(sd)
    small = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="parameters"):
        Optimizer(small.named_parameters(), ADAMW).load_state_dict(sd)
    with pytest.raises(ValueError, match="not an anneal optimizer state"):
        opt.load_state_dict(torch.optim.AdamW(model.parameters()).state_dict())
    bad = copy.deepcopy(sd)
    bad["state"][0][next(k for k in bad["state"][0] if k != "step")] = torch.zeros(2)
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(sd)
    bad["anneal"]["progress"] = b"\x01\x02garbage"
    with pytest.raises(anneal.StepError, match="damaged"):
        opt.load_state_dict(bad)


def test_autograd_sees_the_in_place_update():
    # As with torch's own optimizers, a graph that saved a parameter cannot backpropagate
    # after the step changed it in place.
    w = torch.nn.Parameter(torch.ones(3))
    opt = Optimizer([("w", w)], ADAMW)
    y = (w * w).sum()
    w.grad = torch.ones(3)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_zero_grad_sets_to_none():
    model = make_net()
    opt = Optimizer(model.named_parameters(), ADAMW)
    backward(model, *batches(1)[0])
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    backward(model, *batches(1)[0])
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


def test_half_precision_weights_keep_float32_masters():
    recipe = """import std.torch.{AdamW}
recipe h { precision { params: bf16 }
           update = AdamW(lr: 0.01) }"""
    model = make_net().to(torch.bfloat16)
    master = make_net()  # the float32 reference, stepped by torch on the same gradients
    with torch.no_grad():
        for p, q in zip(master.parameters(), model.parameters()):
            p.copy_(q.float())
    opt = Optimizer(model.named_parameters(), recipe)
    topt = torch.optim.AdamW(master.parameters(), lr=0.01, foreach=False)
    for x, y in batches(4):
        opt.zero_grad()
        topt.zero_grad()
        loss = F.cross_entropy(model(x.to(torch.bfloat16)), y)
        loss.backward()
        for p, q in zip(master.parameters(), model.parameters()):
            p.grad = q.grad.float()
        opt.step()
        topt.step()
        for p, q in zip(master.parameters(), model.parameters()):
            assert q.dtype == torch.bfloat16
            assert torch.equal(q, p.detach().to(torch.bfloat16))
    with pytest.raises(ValueError, match="precision"):
        Optimizer(make_net().to(torch.bfloat16).named_parameters(), ADAMW)


def test_bad_tensors_get_clear_errors():
    def one(t, name="w"):
        return Optimizer([(name, t)], ADAMW)

    with pytest.raises(ValueError, match=r"'w' is on meta.*CPU"):
        one(torch.nn.Parameter(torch.zeros(3, device="meta")))
    with pytest.raises(ValueError, match="float64.*model.float"):
        one(torch.nn.Parameter(torch.zeros(3, dtype=torch.float64)))
    with pytest.raises(ValueError, match="sparse"):
        one(torch.zeros(3).to_sparse().requires_grad_())
    with pytest.raises(ValueError, match="not contiguous"):
        one(torch.zeros(4, 3).t().detach().requires_grad_())
    base = torch.zeros(10)
    a = base[:6].detach().requires_grad_()
    b = base[4:].detach().requires_grad_()
    with pytest.raises(ValueError, match="share storage"):
        Optimizer([("a", a), ("b", b)], ADAMW)
    with pytest.raises(ValueError, match="empty"):
        Optimizer([], ADAMW)
    with pytest.raises(TypeError, match="single tensor"):
        Optimizer(torch.zeros(2), ADAMW)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="groups"):
        Optimizer([{"params": [torch.zeros(2)]}], ADAMW)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="two parameters are named"):
        Optimizer([("w", torch.zeros(1, requires_grad=True)), ("w", torch.zeros(1, requires_grad=True))], ADAMW)
    with pytest.raises(ValueError, match="unknown backend"):
        Optimizer([("w", torch.zeros(1, requires_grad=True))], ADAMW, backend="tpu")
    with pytest.raises(anneal.RecipeError):
        Optimizer([("w", torch.zeros(1, requires_grad=True))], "recipe r { update = nope() }")


def test_steps_from_several_threads_take_turns():
    models = [make_net(i) for i in range(2)]
    opts = [Optimizer(m.named_parameters(), ADAMW) for m in models]
    data = batches(5)
    errors = []

    def train(m, o):
        try:
            run(m, o, data)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=train, args=(m, o)) for m, o in zip(models, opts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ref = make_net(0)
    run(ref, Optimizer(ref.named_parameters(), ADAMW), data)
    assert_close(models[0], ref, rtol=0, atol=0)
