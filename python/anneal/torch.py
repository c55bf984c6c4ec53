"""``anneal.torch``: a recipe's compiled update step as a ``torch.optim.Optimizer``.

The optimizer steps a model's CPU float32 parameters in place, with no copy: the fused
passes read ``.grad`` and write the parameters and the optimizer states where they are.
With ``precision { params: bf16 | f16 }`` the model may hold half-precision weights; the
optimizer keeps float32 master weights and writes the rounded values back.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from . import Recipe, StepError, _native, as_recipe

__all__ = ["Optimizer", "CurriculumSampler"]

try:
    from torch.autograd.graph import increment_version as _increment_version
except ImportError:  # torch < 2.1
    _increment_version = None

_HALF = {"bf16": torch.bfloat16, "f16": torch.float16}
_CPU_BACKENDS = "auto, interp, cranelift, llvm, triton"
_STATE_FORMAT = 1


class _ParamGroup(dict):
    """A ``param_groups`` entry: its ``lr`` is the recipe's, so writing it is refused."""

    def __setitem__(self, key: str, value: Any) -> None:
        if key in ("lr", "momentum"):
            raise AttributeError(
                f"param_groups[...][{key!r}] is the recipe's value for group "
                f"{self.get('name')!r}; the recipe owns the schedule, so change the "
                "recipe's `schedule` (or use opt.observe() for metric-driven schedules)"
            )
        super().__setitem__(key, value)


def _named(params: Any) -> List[Tuple[str, torch.Tensor]]:
    if isinstance(params, torch.Tensor):
        raise TypeError(
            "params must be an iterable of tensors or of (name, tensor) pairs, such as "
            "model.named_parameters(), not a single tensor"
        )
    if isinstance(params, dict):
        raise TypeError(
            "params must be model.named_parameters() or an iterable of tensors; parameter "
            "groups come from the recipe's `groups` block, not from dicts"
        )
    items = list(params)
    if not items:
        raise ValueError("the optimizer got an empty parameter list")
    out: List[Tuple[str, torch.Tensor]] = []
    for i, item in enumerate(items):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            out.append((item[0], item[1]))
        elif isinstance(item, dict):
            raise TypeError(
                "parameter groups come from the recipe's `groups` block; pass "
                "model.named_parameters() and match names there (e.g. "
                '`decay = "*.weight" except "*norm*"`)'
            )
        else:
            out.append((str(i), item))
    seen: Dict[str, int] = {}
    for name, t in out:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"parameter {name!r} is a {type(t).__name__}, not a torch.Tensor")
        if name in seen:
            raise ValueError(f"two parameters are named {name!r}")
        seen[name] = 1
    return out


def _check_param(name: str, p: torch.Tensor, dtype: str) -> None:
    if p.device.type != "cpu":
        raise ValueError(
            f"parameter {name!r} is on {p.device}; anneal.torch steps CPU tensors (backends "
            f"{_CPU_BACKENDS}; triton runs its kernels there under Triton's interpreter) and "
            "does not step CUDA tensors yet, so move the model to the CPU or use a torch "
            "optimizer there"
        )
    if p.layout != torch.strided:
        raise ValueError(f"parameter {name!r} is sparse ({p.layout}); anneal steps dense tensors")
    if not p.is_leaf:
        raise ValueError(f"parameter {name!r} is not a leaf tensor; optimize the leaves of the model")
    if p.dtype == torch.float32:
        pass
    elif p.dtype in (torch.bfloat16, torch.float16):
        want = _HALF.get(dtype)
        if want != p.dtype:
            kind = "bf16" if p.dtype == torch.bfloat16 else "f16"
            raise ValueError(
                f"parameter {name!r} is {p.dtype} but the recipe keeps {dtype} weights; add "
                f"`precision {{ params: {kind} }}` to the recipe (anneal keeps float32 master "
                "weights) or call model.float()"
            )
    elif p.dtype == torch.float64:
        raise ValueError(
            f"parameter {name!r} is float64; anneal steps float32 tensors (and bf16/f16 with "
            "float32 master weights): call model.float()"
        )
    else:
        raise ValueError(f"parameter {name!r} is {p.dtype}; anneal steps floating-point weights")
    if not p.is_contiguous():
        raise ValueError(
            f"parameter {name!r} is not contiguous; anneal updates it in place, so make it "
            "contiguous first (with torch.no_grad(): p.set_(p.contiguous()))"
        )


def _check_no_sharing(named: Sequence[Tuple[str, torch.Tensor]]) -> None:
    spans = []
    for name, p in named:
        if p.numel() == 0:
            continue
        start = p.data_ptr()
        spans.append((start, start + p.numel() * p.element_size(), name))
    spans.sort()
    for (_, e0, n0), (s1, _, n1) in zip(spans, spans[1:]):
        if s1 < e0:
            raise ValueError(
                f"parameters {n0!r} and {n1!r} share storage; an in-place step would update "
                "that memory twice: pass each tensor once (tied weights appear once in "
                "named_parameters())"
            )


def _flat_f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().reshape(-1).numpy()


class _Model:
    """The caller's closure as the model a recipe calls mid-step (SAM's ``grad_at``,
    Sophia's ``hvp``, L-BFGS's line search): each call moves the model's parameters to the
    point asked for and evaluates the closure there."""

    def __init__(self, opt: Optimizer, closure: Callable[[], Any], loss: Any = None) -> None:
        self.opt = opt
        self.closure = closure
        self.last_loss: Optional[float] = None
        # The closure's loss at the step's parameters, for recipes that read `loss`.
        self.step_loss = loss

    def _move_to(self, point: List[np.ndarray]) -> None:
        with torch.no_grad():
            for p, x in zip(self.opt._params, point):
                p.copy_(torch.from_numpy(x).view(p.shape))

    def _evaluate(self) -> Any:
        with torch.enable_grad():
            loss = self.closure()
        if loss is None:
            raise ValueError("the closure returned None; it must return the loss")
        self.last_loss = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        return loss

    def _grads(self) -> List[np.ndarray]:
        out = []
        for name, p in zip(self.opt._names, self.opt._params):
            g = p.grad
            if g is None:
                out.append(np.zeros(p.numel(), dtype=np.float32))
                continue
            if g.shape != p.shape:
                raise ValueError(
                    f"the closure left a gradient of shape {tuple(g.shape)} on {name!r}, shape {tuple(p.shape)}"
                )
            out.append(g.detach().float().reshape(-1).numpy().copy())
        return out

    def grad_at(self, point: List[np.ndarray]) -> List[np.ndarray]:
        self._move_to(point)
        self._evaluate()
        return self._grads()

    def loss_at(self, point: List[np.ndarray]) -> Tuple[float, List[np.ndarray]]:
        self._move_to(point)
        self._evaluate()
        return self.last_loss, self._grads()  # type: ignore[return-value]

    def loss(self) -> float:
        if self.step_loss is None:
            raise ValueError("the closure returned None; this recipe reads the loss, so it must return it")
        loss = self.step_loss
        return float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)

    def hvp(self, point: List[np.ndarray], v: List[np.ndarray]) -> List[np.ndarray]:
        self._move_to(point)
        self._evaluate()
        params = self.opt._params
        grads = [p.grad for p in params]
        if any(g is None or g.grad_fn is None for g in grads):
            raise ValueError(
                "this recipe takes Hessian-vector products: the closure must call "
                "loss.backward(create_graph=True) so the gradients can be differentiated"
            )
        vs = [torch.from_numpy(x).view(p.shape).to(p.dtype) for x, p in zip(v, params)]
        hv = torch.autograd.grad(grads, params, grad_outputs=vs, allow_unused=True)
        return [
            np.zeros(p.numel(), dtype=np.float32) if h is None else h.detach().float().reshape(-1).numpy().copy()
            for h, p in zip(hv, params)
        ]


def _launcher_factory() -> Any:
    try:
        from . import triton as _triton
    except ImportError as e:  # pragma: no cover - triton ships with torch on Linux
        raise ValueError(f"the triton back end needs the `triton` package: {e}") from None

    def make(source: str, passes: List[Dict[str, Any]]) -> Any:
        # anneal.torch steps CPU tensors, so the kernels run under Triton's interpreter.
        return _triton.Launcher(source, passes, interpret=True)

    return make


class Optimizer(torch.optim.Optimizer):
    """A recipe's fused update step as a torch optimizer.

    ``params`` is ``model.named_parameters()`` (the names feed the recipe's ``groups``
    globs) or an iterable of tensors (named ``"0"``, ``"1"``, ...). ``recipe`` is an
    :class:`anneal.Recipe`, a path to a ``.anneal`` file, or recipe source text.
    ``backend`` is ``auto`` (the Cranelift JIT when the recipe fuses, else the
    interpreter), ``cranelift``, ``llvm``, ``interp`` or ``triton`` (the step as Triton
    kernels; on CPU tensors they run under Triton's interpreter, a check of semantics, not
    speed); ``threads`` 0 uses every core.
    ``track_norms`` adds the gradients' global and per-tensor norms to ``metrics``.
    """

    def __init__(
        self,
        params: Union[Iterable[torch.Tensor], Iterable[Tuple[str, torch.Tensor]]],
        recipe: Union[Recipe, str, Any],
        *,
        backend: str = "auto",
        threads: int = 0,
        track_norms: bool = False,
    ) -> None:
        self.recipe = as_recipe(recipe)
        if backend == "wgsl":
            raise ValueError(
                f"the wgsl back end runs on wgpu's own buffers, not on PyTorch's memory; choose one of {_CPU_BACKENDS}"
            )
        if not isinstance(threads, int) or threads < 0:
            raise ValueError(f"threads must be a whole number >= 0 (0: every core), not {threads!r}")
        named = _named(params)
        dtype = self.recipe.param_dtype
        for name, p in named:
            _check_param(name, p, dtype)
        _check_no_sharing(named)
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        self._half = any(p.dtype != torch.float32 for p in self._params)
        # The weights the step updates: the parameters themselves, or float32 masters.
        self._masters: List[torch.Tensor] = [
            p.detach().float().clone() if p.dtype != torch.float32 else p for p in self._params
        ]
        self._views: List[Optional[np.ndarray]] = [None] * len(self._params)
        self._ptrs: List[int] = [0] * len(self._params)
        shapes = [list(p.shape) for p in self._params]
        self._numels = [p.numel() for p in self._params]
        try:
            self._session = _native.Session(
                self.recipe._native,
                self._names,
                shapes,
                [_flat_f32(m) for m in self._masters],
                backend,
                threads,
                _launcher_factory() if backend == "triton" else None,
            )
        except StepError as e:
            raise StepError(f"recipe `{self.recipe.name}` cannot take these parameters: {e}") from None
        self.track_norms = track_norms
        self.metrics: Dict[str, Any] = {}
        group_of = self._session.group_of()
        names = self.recipe.groups or ["default"]
        groups = []
        for gi, gname in enumerate(names):
            members = [p for p, g in zip(self._params, group_of) if g == gi]
            groups.append(_ParamGroup(params=members, name=gname))
        self._building = True
        super().__init__([g for g in groups if g["params"]] or groups[:1], {})
        self._building = False
        self._group_index = [names.index(g["name"]) for g in self.param_groups]
        # The training iterate (schedule-free's y) while eval() has the evaluation view.
        self._training_params: Optional[List[torch.Tensor]] = None
        self._refresh_groups()

    # -- torch.optim.Optimizer's interface -------------------------------------------

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        if getattr(self, "_building", False):
            group = param_group if isinstance(param_group, _ParamGroup) else _ParamGroup(param_group)
            dict.__setitem__(group, "params", list(group["params"]))
            self.param_groups.append(group)
            return
        raise ValueError(
            "anneal's parameter groups come from the recipe's `groups` block; add a group "
            "there (or build a new Optimizer with the new parameters)"
        )

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Optional[Any]:
        """Runs the recipe's step on every parameter's ``.grad``, in place.

        ``closure`` re-evaluates the model (zero the gradients, compute the loss, call
        ``backward``, return the loss), as for ``torch.optim.LBFGS``; recipes that call the
        model mid-step (SAM, L-BFGS, Sophia) need it. Returns the closure's loss.
        """
        caps = self.recipe.capabilities
        if caps and closure is None:
            what = ", ".join(caps)
            raise RuntimeError(
                f"recipe `{self.recipe.name}` calls the model during its step ({what}): pass a "
                "closure that zeroes the gradients, computes the loss, calls backward() and "
                "returns the loss, e.g. opt.step(closure)"
            )
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._training_params is not None:
            raise RuntimeError(
                "the parameters are at the recipe's evaluation view (opt.eval()); call "
                "opt.train() before step(), as with schedulefree's optimizers"
            )
        grads, frozen = self._gradients()
        if all(frozen):
            return loss
        used = [g["lr"] for g in self.param_groups]
        views = self._master_views()
        model = _Model(self, closure, loss) if (caps and closure is not None) else None
        self._session.step(views, grads, model, frozen if any(frozen) else None)
        if self._half:
            for p, m in zip(self._params, self._masters):
                p.copy_(m)
        elif _increment_version is not None:
            # The step wrote through NumPy views, which autograd does not see: bump the
            # version counters as torch's in-place ops do, so a graph that saved these
            # tensors refuses to backpropagate through the old values.
            _increment_version(self._params)
        self._refresh_groups()
        self._record(grads, used)
        return loss

    @torch.no_grad()
    def eval(self) -> None:
        """Moves the parameters to the recipe's evaluation view, for evaluating or saving
        the model: ``eval param = ...`` (schedule-free's average ``x``, where gradients
        are taken at ``y``), as ``schedulefree``'s ``optimizer.eval()`` does. A recipe
        without one leaves them as they are. :meth:`train` moves them back; ``step``
        refuses to run in between."""
        if self._training_params is not None:
            return
        view = self._session.eval_params(self._master_views())
        if view is None:
            return
        self._training_params = [m.detach().clone() for m in self._masters]
        for p, x in zip(self._params, view):
            p.copy_(torch.from_numpy(x).view(p.shape))

    @torch.no_grad()
    def train(self) -> None:
        """Moves the parameters back to the training iterate after :meth:`eval`, exactly."""
        saved, self._training_params = self._training_params, None
        if saved is None:
            return
        for p, m, y in zip(self._params, self._masters, saved):
            m.copy_(y)
            if p is not m:
                p.copy_(m)

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> Dict[str, Any]:
        """Torch's layout: ``state`` (per parameter index, the recipe's element states as
        tensors of the parameter's shape, keyed ``stage.state``, e.g. ``adamw.mu``, and
        ``step``), ``param_groups`` (indices, name, lr), and ``anneal`` (the recipe's
        hash, tensor names, and the rest of the progress: counts, scalar states)."""
        index = {id(p): i for i, p in enumerate(self._params)}
        state: Dict[int, Dict[str, Any]] = {i: {} for i in range(len(self._params))}
        count = float(self._session.steps_taken)
        for key, per_tensor in self._session.element_states():
            for i, (flat, p) in enumerate(zip(per_tensor, self._params)):
                state[i][key] = torch.from_numpy(flat).view(p.shape)
        for i in range(len(self._params)):
            state[i]["step"] = torch.tensor(count)
            if self._half:
                state[i]["master"] = self._masters[i].detach().clone()
        groups = []
        for g in self.param_groups:
            entry = {k: v for k, v in g.items() if k != "params"}
            entry["params"] = [index[id(p)] for p in g["params"]]
            groups.append(entry)
        return {
            "state": state,
            "param_groups": groups,
            "anneal": {
                "format": _STATE_FORMAT,
                "recipe": self.recipe.name,
                "recipe_hash": self.recipe.hash,
                "names": list(self._names),
                "progress": self._session.progress_bytes(),
            },
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restores ``state_dict()``'s output; refuses a state from another recipe or
        other tensors, saying which."""
        if not isinstance(state_dict, dict) or "anneal" not in state_dict:
            raise ValueError(
                "this is not an anneal optimizer state (no 'anneal' entry); a torch.optim "
                "state cannot be loaded into anneal.torch.Optimizer"
            )
        meta = state_dict["anneal"]
        if not isinstance(meta, dict) or meta.get("format") != _STATE_FORMAT:
            raise ValueError(
                f"unknown anneal optimizer state format {meta.get('format') if isinstance(meta, dict) else meta!r}"
            )
        if meta.get("recipe_hash") != self.recipe.hash:
            raise ValueError(
                f"the optimizer state was saved by recipe `{meta.get('recipe')}` "
                f"(hash {meta.get('recipe_hash')}), not this recipe `{self.recipe.name}` "
                f"(hash {self.recipe.hash}); the recipe and the library it uses must be the same"
            )
        if list(meta.get("names", [])) != self._names:
            raise ValueError(
                f"the optimizer state is for parameters {list(meta.get('names', []))[:5]}..., "
                f"this optimizer has {self._names[:5]}...: build it from the same model"
            )
        state = state_dict.get("state", {})
        elements: Dict[str, List[np.ndarray]] = {}
        for key, _ in self._session.element_states():
            per_tensor = []
            for i, (name, p) in enumerate(zip(self._names, self._params)):
                t = state.get(i, {}).get(key)
                if t is None:
                    raise ValueError(f"the optimizer state has no {key!r} for parameter {name!r}")
                if tuple(t.shape) != tuple(p.shape):
                    raise ValueError(
                        f"the saved {key!r} of {name!r} has shape {tuple(t.shape)}, the parameter {tuple(p.shape)}"
                    )
                per_tensor.append(t.detach().to("cpu", torch.float32).reshape(-1).contiguous().numpy())
            elements[key] = per_tensor
        progress = meta.get("progress")
        if not isinstance(progress, (bytes, bytearray)):
            raise ValueError("the optimizer state's 'anneal.progress' is missing or not bytes")
        self._session.restore(bytes(progress), list(elements.items()))
        if self._half:
            with torch.no_grad():
                for i, (m, p) in enumerate(zip(self._masters, self._params)):
                    saved = state.get(i, {}).get("master")
                    if saved is not None:
                        m.copy_(saved.reshape(m.shape))
                        p.copy_(m)
        self._refresh_groups()

    # -- anneal's additions ----------------------------------------------------------

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss times the recipe's current loss scale (its ``GradScaler`` stage): call
        ``opt.scale(loss).backward()``; the step unscales, and skips on overflow."""
        s = self._session.loss_scale()
        if s is None:
            raise RuntimeError(
                f"recipe `{self.recipe.name}` has no loss scaling: add a GradScaler stage "
                "(e.g. `update = GradScaler() |> AdamW(...)`, import std.torch)"
            )
        return loss * s

    def observe(self, value: float) -> None:
        """Feeds a metric (a validation loss) to schedules that follow one
        (ReduceLROnPlateau), after the step it belongs to."""
        value = float(value)
        self._session.observe(value)
        self._refresh_groups()

    @property
    def skipped_steps(self) -> int:
        """Steps skipped so far (overflow under loss scaling, or a recipe's `skip if`)."""
        return self._session.skipped_steps

    @property
    def loss_scale(self) -> Optional[float]:
        return self._session.loss_scale()

    @property
    def backend(self) -> str:
        """The back end that runs the step (``cranelift``, ``llvm``, ``interp``, ``builtin``)."""
        return self._session.backend

    @property
    def fallback(self) -> Optional[str]:
        """Why ``auto`` runs the recipe on the interpreter, if it does."""
        return self._session.fallback

    def __repr__(self) -> str:
        groups = ", ".join(f"{g['name']}: {len(g['params'])} tensors, lr {g['lr']}" for g in self.param_groups)
        return f"anneal.torch.Optimizer(recipe={self.recipe.name!r}, backend={self.backend!r}, {groups})"

    # -- internals -------------------------------------------------------------------

    def _master_views(self) -> List[np.ndarray]:
        views = self._views
        for i, m in enumerate(self._masters):
            ptr = m.data_ptr()
            if views[i] is None or self._ptrs[i] != ptr:
                if not self._half:
                    _check_param(self._names[i], m, self.recipe.param_dtype)
                if m.numel() != self._numels[i]:
                    raise ValueError(
                        f"parameter {self._names[i]!r} changed shape to {tuple(m.shape)} since the optimizer was built"
                    )
                views[i] = _flat_f32(m)
                self._ptrs[i] = ptr
        return views  # type: ignore[return-value]

    def _gradients(self) -> Tuple[List[np.ndarray], List[bool]]:
        # torch itself guarantees that a `.grad` has its parameter's shape, device and
        # dtype (assignment and backward both check), so only the layout and the memory
        # order are left to check here; this loop is the Python cost of a step.
        grads: List[np.ndarray] = []
        frozen: List[bool] = []
        strided = torch.strided
        f32 = torch.float32
        for p in self._params:
            g = p.grad
            if g is None:
                grads.append(np.zeros(p.numel(), dtype=np.float32))
                frozen.append(True)
                continue
            if g.layout is not strided:
                name = self._names[len(grads)]
                raise ValueError(f"the gradient of {name!r} is sparse ({g.layout}); anneal steps dense gradients")
            if g.dtype is not f32:
                g = g.float()
            elif not g.is_contiguous():
                g = g.contiguous()
            grads.append(g.numpy())
            frozen.append(False)
        return grads, frozen

    def _refresh_groups(self) -> None:
        # What the next step uses, per group: the lr (and the momentum, SGD's or Adam's
        # first beta, where the optimizer has one), for loggers; both are read-only.
        lrs = self._session.learning_rates()
        momenta = self._session.momenta()
        for gi, g in zip(self._group_index, self.param_groups):
            dict.__setitem__(g, "lr", lrs[gi] if gi < len(lrs) else None)
            m = momenta[gi] if gi < len(momenta) else None
            if m is not None:
                dict.__setitem__(g, "momentum", m)

    def _record(self, grads: List[np.ndarray], used_lr: List[Optional[float]]) -> None:
        m: Dict[str, Any] = {
            "lr": used_lr,
            "loss_scale": self._session.loss_scale(),
            "skipped": self._session.last_skipped,
            "skipped_steps": self._session.skipped_steps,
            "step": self._session.steps_taken,
        }
        if self.track_norms:
            ts = [torch.from_numpy(g) for g in grads]
            norms = [float(n) for n in torch._foreach_norm(ts)] if ts else []
            m["grad_norm"] = math.sqrt(sum(n * n for n in norms))
            m["tensor_norms"] = dict(zip(self._names, norms))
        self.metrics = m


class CurriculumSampler(torch.utils.data.Sampler):
    """Batches of example indices drawn by the recipe's ``curriculum`` blocks (pace and
    sampling rule), the seeded sampler ``anneal run`` uses: pass it as
    ``DataLoader(dataset, batch_sampler=sampler)``.

    Loss-driven phases (``difficulty = loss``, self-paced learning, hard-example mining)
    rank examples by the per-example losses fed with ``observe(indices, losses)``; an
    example not yet observed counts as loss 0. Phases that backpropagate part of a batch
    (``ohem``, ``selective_backprop``) say which positions through ``select(losses)``.
    ``columns`` gives the values of ``column("name")`` difficulties, one per example.
    """

    def __init__(
        self,
        recipe: Union[Recipe, str, Any],
        num_examples: int,
        seed: int = 0,
        *,
        batch_size: Optional[int] = None,
        steps: Optional[int] = None,
        columns: Optional[Dict[str, Sequence[float]]] = None,
    ) -> None:
        self.recipe = as_recipe(recipe)
        if not self.recipe._native.has_curriculum:
            raise ValueError(f"recipe `{self.recipe.name}` has no curriculum block to sample by")
        batch = batch_size if batch_size is not None else self.recipe._native.batch_size
        if batch is None:
            raise ValueError("give batch_size= (the recipe has no `data = csv(..., batch: N)` to take it from)")
        steps = steps if steps is not None else self.recipe.steps
        if steps is None:
            raise ValueError("give steps= (the recipe has no `steps`)")
        if not isinstance(num_examples, int) or num_examples <= 0:
            raise ValueError(f"num_examples must be a positive whole number, not {num_examples!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a whole number >= 0, not {seed!r}")
        self.num_examples = num_examples
        self.batch_size = int(batch)
        self.steps = int(steps)
        self._native = _native.Curriculum(self.recipe._native, num_examples, self.batch_size, seed)
        for name, values in (columns or {}).items():
            self._native.set_column(name, [float(v) for v in values])
        self._step = 0
        #: The visible fraction of the examples at the last drawn step.
        self.visible_fraction = 1.0

    def __iter__(self):
        while self._step < self.steps:
            rows, self.visible_fraction = self._native.draw(self._step)
            self._step += 1
            yield rows

    def __len__(self) -> int:
        return self.steps - self._step

    def observe(self, indices: Any, per_example_losses: Any) -> None:
        """Records the losses of these examples (e.g. ``F.cross_entropy(...,
        reduction="none")`` of the batch just drawn)."""
        idx = [int(i) for i in (indices.tolist() if hasattr(indices, "tolist") else indices)]
        if isinstance(per_example_losses, torch.Tensor):
            per_example_losses = per_example_losses.detach().float().reshape(-1).tolist()
        self._native.observe(idx, [float(x) for x in per_example_losses])

    def select(self, per_example_losses: Any) -> List[int]:
        """Positions of the last drawn batch to backpropagate (all of them, unless the
        phase is ``ohem`` or ``selective_backprop``)."""
        if isinstance(per_example_losses, torch.Tensor):
            per_example_losses = per_example_losses.detach().float().reshape(-1).tolist()
        t = max(self._step - 1, 0)
        return list(self._native.select(t, [float(x) for x in per_example_losses]))

    def state_dict(self) -> Dict[str, Any]:
        return {"step": self._step, "sampler": self._native.state(), "recipe_hash": self.recipe.hash}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state.get("recipe_hash") != self.recipe.hash:
            raise ValueError("the sampler state was saved for another recipe")
        self._native.restore(bytes(state["sampler"]))
        self._step = int(state["step"])
