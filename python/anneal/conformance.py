"""``python -m anneal.conformance PATH... [--json]``: the golden cases through PyTorch.

Each case (``FORMAT.md``, ``FORMAT-TRAIN.md`` beside the cases) becomes the recipe
``anneal conformance --emit-recipe`` prints and is replayed through
:class:`anneal.torch.Optimizer` on real torch objects: parameters are ``torch.Tensor``s,
losses are computed by torch's autograd, the training models are ``nn.Sequential``s of
``nn.Linear`` with torch's own losses. Schedules are read from ``param_groups[0]["lr"]``
before each step, loss scales from ``opt.scale`` and ``opt.skipped_steps``. The last line
is ``N passed, M failed``, as ``anneal conformance`` prints it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import RecipeError, StepError, _native, compile
from .torch import Optimizer

__all__ = ["run_case", "run_paths", "main"]


class Mismatch(Exception):
    """A value outside the case's tolerance, or a case that could not run."""


class _Checker:
    def __init__(self, case: Dict[str, Any]) -> None:
        self.rtol = float(case["rtol"])
        self.atol = float(case["atol"])

    def value(self, want: float, got: float, where: str) -> None:
        tol = self.atol + self.rtol * abs(want)
        if not (abs(got - want) <= tol):
            raise Mismatch(
                f"{where}: expected {want:e}, got {got:e} (|diff| {abs(got - want):.3e} > tolerance {tol:.3e})"
            )

    def values(self, want: Sequence[float], got: Sequence[float], where: str) -> None:
        if len(want) != len(got):
            raise Mismatch(f"{where}: expected {len(want)} values, got {len(got)}")
        for i, (w, g) in enumerate(zip(want, got)):
            self.value(float(w), float(g), f"{where}[{i}]")


def _f32(xs: Sequence[float]) -> torch.Tensor:
    # Inputs are short decimals: parsed as f64, rounded to f32, as the generator did.
    return torch.tensor(np.asarray(xs, dtype=np.float64).astype(np.float32))


def _params(case: Dict[str, Any]) -> List[Tuple[str, torch.Tensor]]:
    out = []
    for name, spec in case["params"].items():
        t = _f32(spec["data"]).reshape(spec["shape"]).clone().requires_grad_(True)
        out.append((name, t))
    return out


def _loss_fn(case: Dict[str, Any], named: List[Tuple[str, torch.Tensor]]) -> Callable[[], torch.Tensor]:
    """The case's loss as a torch closure that sets each ``.grad`` and returns the loss.
    FORMAT.md writes the gradients out (the generator used no autodiff), so they are
    computed here the same way, in torch's float32 arithmetic."""
    spec = case["loss"]
    fn, args = spec["fn"], spec.get("args", {})
    if fn == "quadratic":
        a = {n: _f32(v) for n, v in args["a"].items()}
        c = {n: _f32(v) for n, v in args["c"].items()}

        @torch.no_grad()
        def quadratic() -> torch.Tensor:
            total = torch.zeros((), dtype=torch.float32)
            for n, p in named:
                d = p.reshape(-1) - c[n]
                p.grad = (a[n] * d).reshape(p.shape)
                total = total + (0.5 * a[n] * d * d).sum()
            return total

        return quadratic
    if fn == "rosenbrock":
        A, B = float(args["a"]), float(args["b"])
        ((_, xy),) = named

        @torch.no_grad()
        def rosenbrock() -> torch.Tensor:
            x, y = xy[0], xy[1]
            r = y - x * x
            gx = -2.0 * (A - x) - 4.0 * B * x * r
            gy = 2.0 * B * r
            xy.grad = torch.stack([gx, gy])
            return (A - x) * (A - x) + B * r * r

        return rosenbrock
    raise Mismatch(f"unknown loss `{fn}`")


def _run_optimizer(case: Dict[str, Any], recipe: Any, check: _Checker, backend: str) -> None:
    named = _params(case)
    opt = Optimizer(named, recipe, backend=backend, threads=1)
    steps = int(case["steps"])
    expected = case["expected"]
    if len(expected) != steps:
        raise Mismatch(f"`expected` has {len(expected)} entries for {steps} steps")
    loss_fn = _loss_fn(case, named) if "loss" in case else None

    def closure() -> torch.Tensor:
        return loss_fn()  # type: ignore[misc]

    for k in range(steps):
        if loss_fn is not None:
            if recipe.capabilities:
                opt.step(closure)
            else:
                closure()
                opt.step()
        else:
            for n, p in named:
                p.grad = _f32(case["grads"][k][n]).reshape(p.shape)
            opt.step()
        for n, p in named:
            check.values(expected[k][n], p.detach().reshape(-1).tolist(), f"step {k}, `{n}`")
        if "expected_slow" in case:
            state = opt.state_dict()["state"]
            for i, (n, _) in enumerate(named):
                slow = state[i].get("lookahead.slow")
                if slow is None:
                    raise Mismatch("the recipe has no lookahead stage with slow weights")
                check.values(case["expected_slow"][k][n], slow.reshape(-1).tolist(), f"step {k}, slow `{n}`")


def _run_schedule(case: Dict[str, Any], recipe: Any, check: _Checker, backend: str) -> None:
    p = torch.zeros(1, requires_grad=True)
    opt = Optimizer([p], recipe, backend=backend, threads=1)
    metrics = case.get("metrics", [])
    expected = case["expected"]
    for k, want in enumerate(expected):
        check.value(float(want), float(opt.param_groups[0]["lr"]), f"step {k}, lr")
        p.grad = torch.zeros(1)
        opt.step()
        if k < len(metrics):
            opt.observe(metrics[k])


def _run_loss_scale(case: Dict[str, Any], recipe: Any, check: _Checker, backend: str) -> None:
    p = torch.zeros(1, requires_grad=True)
    opt = Optimizer([p], recipe, backend=backend, threads=1)
    scales = case["expected"]["scale"]
    skipped = case["expected"]["skipped"]
    for k, overflow in enumerate(case["overflow"]):
        before = opt.skipped_steps
        # The scaled loss's gradient: inf on an overflow step, finite otherwise.
        loss = opt.scale(p.sum() * (math.inf if overflow else 1.0))
        loss.backward()
        opt.step()
        opt.zero_grad()
        check.value(float(scales[k]), float(opt.scale(torch.tensor(1.0))), f"step {k}, scale")
        was_skipped = opt.skipped_steps == before + 1
        if was_skipped != bool(skipped[k]):
            raise Mismatch(f"step {k}: expected skipped = {skipped[k]}, got {was_skipped}")


def _data(case: Dict[str, Any], path: str) -> Tuple[torch.Tensor, np.ndarray]:
    spec = case["data"]
    file = spec["file"]
    if os.sep in file or "/" in file or ".." in file:
        raise Mismatch(f"`data.file` must be a bare file name, not `{file}`")
    csv = os.path.join(os.path.dirname(os.path.abspath(path)), "..", "data", file)
    raw = np.genfromtxt(csv, delimiter=",", skip_header=1, dtype=np.float64)
    x32 = raw[:, :-1].astype(np.float32)
    y = raw[:, -1]
    if spec.get("standardize", False):
        # FORMAT-TRAIN.md §2: per column, over every row, in float64, population std.
        x64 = x32.astype(np.float64)
        mean = x64.mean(axis=0)
        std = np.sqrt(((x64 - mean) ** 2).mean(axis=0))
        std[std == 0] = 1.0
        x32 = ((x64 - mean) / std).astype(np.float32)
    return torch.from_numpy(x32), y


def _model(spec: Dict[str, Any], init: Dict[str, Any]) -> torch.nn.Sequential:
    layers = spec["layers"]
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}.get(spec.get("activation", ""), None)
    mods: List[torch.nn.Module] = []
    for i in range(len(layers) - 1):
        if i > 0:
            if act is None:
                raise Mismatch(f"a model with hidden layers needs an activation, got {spec.get('activation')!r}")
            mods.append(act())
        mods.append(torch.nn.Linear(layers[i], layers[i + 1]))
    model = torch.nn.Sequential(*mods)
    with torch.no_grad():
        for name, p in model.named_parameters():
            t = init[name]
            p.copy_(torch.tensor(np.asarray(t["data"], dtype=np.float32)).reshape(t["shape"]))
    return model


def _global_norm(ps: Sequence[torch.Tensor]) -> float:
    return math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in ps if p.grad is not None))


def _run_train(case: Dict[str, Any], recipe: Any, check: _Checker, path: str, backend: str) -> None:
    torch.manual_seed(0)
    x, y = _data(case, path)
    spec = case["model"]
    model = _model(spec, case["init"])
    if spec["loss"] == "cross_entropy":
        target = torch.from_numpy(y.astype(np.int64))

        def loss_of(out: torch.Tensor, rows: List[int]) -> torch.Tensor:
            return F.cross_entropy(out, target[rows])
    else:
        target = torch.from_numpy(y.astype(np.float32))

        def loss_of(out: torch.Tensor, rows: List[int]) -> torch.Tensor:
            return F.mse_loss(out[:, 0], target[rows])

    params = list(model.parameters())
    opt = Optimizer(model.named_parameters(), recipe, backend=backend, threads=1)
    batches = case["batches"]
    k = int(case["recipe"].get("accumulate", 1))
    exp = case["expected"]
    losses: List[float] = []
    norms: List[float] = []
    perturbed: List[Tuple[float, float]] = []
    m = 0
    for t in range(int(case["steps"])):
        if "lr" in exp:
            check.values(exp["lr"][t], [g["lr"] for g in opt.param_groups], f"lr[{t}]")
        if "momentum" in exp:
            check.values(exp["momentum"][t], [g.get("momentum", math.nan) for g in opt.param_groups], f"momentum[{t}]")
        opt.zero_grad()
        rows: List[int] = []
        for _ in range(k):
            rows = batches[m % len(batches)]
            m += 1
            loss = loss_of(model(x[rows]), rows)
            losses.append(loss.item())
            (loss / k).backward()
        norms.append(_global_norm(params))
        closure = None
        if recipe.capabilities:
            calls: List[Tuple[float, float]] = []

            def closure(rows: List[int] = rows, calls: List[Tuple[float, float]] = calls) -> torch.Tensor:
                opt.zero_grad()
                loss = loss_of(model(x[rows]), rows)
                loss.backward()
                calls.append((loss.item(), _global_norm(params)))
                return loss

            opt.step(closure)
            # The last call is the model at the perturbed point (SAM's grad_at).
            perturbed.append(calls[-1])
        else:
            opt.step()
        if t == 0 and "params_step1" in exp:
            for n, p in model.named_parameters():
                check.values(exp["params_step1"][n], p.detach().reshape(-1).tolist(), f"params_step1.{n}")
    check.values(exp["loss"], losses, "loss")
    check.values(exp["grad_norm"], norms, "grad_norm")
    if "loss_perturbed" in exp:
        check.values(exp["loss_perturbed"], [a for a, _ in perturbed], "loss_perturbed")
        check.values(exp["grad_norm_perturbed"], [b for _, b in perturbed], "grad_norm_perturbed")
    for n, p in model.named_parameters():
        check.values(exp["params_final"][n], p.detach().reshape(-1).tolist(), f"params_final.{n}")


def run_case(path: str, backend: str = "auto") -> Tuple[str, bool, str]:
    """Runs one case file: (name, passed, message)."""
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            case = json.load(f)
        if not isinstance(case, dict):
            raise Mismatch("a case file holds one JSON object")
        name = str(case.get("name", name))
        src = _native.case_recipe(path)
        recipe = compile(src, file=name)
        check = _Checker(case)
        kind = case.get("kind")
        if kind == "optimizer":
            _run_optimizer(case, recipe, check, backend)
        elif kind == "schedule":
            _run_schedule(case, recipe, check, backend)
        elif kind == "loss_scale":
            _run_loss_scale(case, recipe, check, backend)
        elif kind == "train":
            _run_train(case, recipe, check, path, backend)
        else:
            raise Mismatch(f"unknown case kind {kind!r}")
    except (Mismatch, RecipeError, StepError, ValueError, KeyError, TypeError, RuntimeError, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, KeyError):
            msg = f"missing field {e}"
        return name, False, msg
    return name, True, ""


def run_paths(paths: Sequence[str], backend: str = "auto") -> List[Tuple[str, bool, str]]:
    return [run_case(p, backend) for p in _native.case_files(list(paths))]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m anneal.conformance",
        description="Replay golden cases through anneal.torch.Optimizer on real torch tensors.",
    )
    ap.add_argument("paths", nargs="+", metavar="PATH", help="case files or directories of cases")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    ap.add_argument("--backend", default="auto", help="auto, interp, cranelift or llvm (default: auto)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        results = run_paths(args.paths, args.backend)
    except StepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    passed = sum(1 for _, ok, _ in results if ok)
    failed = len(results) - passed
    if args.json:
        print(
            json.dumps(
                {
                    "passed": passed,
                    "failed": failed,
                    "cases": [
                        {"name": n, "status": "passed" if ok else "failed", "message": m} for n, ok, m in results
                    ],
                }
            )
        )
    else:
        for n, ok, m in results:
            print(f"PASS {n}" if ok else f"FAIL {n}: {m}")
        print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
