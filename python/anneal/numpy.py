"""``anneal.numpy``: a recipe's compiled update step on NumPy arrays, in place."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import Recipe, StepError, _native, as_recipe

__all__ = ["Stepper"]

_STATE_FORMAT = 1


class Stepper:
    """Steps float32 C-contiguous arrays in place.

    ``shapes`` maps each tensor's name (matched by the recipe's ``groups`` globs) to its
    shape, in the order the tensors are passed. The recipe's states are created from the
    parameters of the first ``step`` (or from ``params`` given here).
    """

    def __init__(
        self,
        recipe: Union[Recipe, str, Any],
        shapes: Mapping[str, Sequence[int]],
        *,
        params: Optional[Union[Mapping[str, np.ndarray], Sequence[np.ndarray]]] = None,
        backend: str = "auto",
        threads: int = 0,
    ) -> None:
        self.recipe = as_recipe(recipe)
        if not isinstance(shapes, Mapping) or not shapes:
            raise TypeError("shapes must be a non-empty dict of name -> shape tuple")
        self.names: List[str] = [str(n) for n in shapes]
        self.shapes: List[Tuple[int, ...]] = []
        for n, s in shapes.items():
            try:
                shape = tuple(int(d) for d in s)
            except (TypeError, ValueError):
                raise TypeError(f"the shape of {n!r} must be a tuple of whole numbers, not {s!r}") from None
            if any(d < 0 for d in shape):
                raise ValueError(f"the shape of {n!r} has a negative dimension: {shape}")
            self.shapes.append(shape)
        if backend == "wgsl":
            raise ValueError("anneal.numpy steps host arrays; choose auto, interp, cranelift or llvm")
        self._backend = backend
        self._threads = threads
        self._session: Optional[Any] = None
        if params is not None:
            self._bind(self._arrays(params, "params", writable=False))

    def _arrays(self, xs: Any, what: str, writable: bool) -> List[np.ndarray]:
        if isinstance(xs, Mapping):
            missing = [n for n in self.names if n not in xs]
            if missing:
                raise ValueError(f"{what} has no array for {missing[0]!r}")
            extra = [n for n in xs if n not in self.names]
            if extra:
                raise ValueError(f"{what} has {extra[0]!r}, which is not one of the shapes given")
            xs = [xs[n] for n in self.names]
        else:
            xs = list(xs)
            if len(xs) != len(self.names):
                raise ValueError(f"{what} has {len(xs)} arrays for {len(self.names)} tensors")
        out = []
        for n, shape, a in zip(self.names, self.shapes, xs):
            if not isinstance(a, np.ndarray):
                raise TypeError(f"{what}[{n!r}] is a {type(a).__name__}, not a numpy array")
            if a.dtype != np.float32:
                raise ValueError(f"{what}[{n!r}] is {a.dtype}; anneal steps float32 arrays (a.astype(np.float32))")
            if tuple(a.shape) != shape:
                raise ValueError(f"{what}[{n!r}] has shape {a.shape}, expected {shape}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{what}[{n!r}] is not C-contiguous (np.ascontiguousarray)")
            if writable and not a.flags.writeable:
                raise ValueError(f"{what}[{n!r}] is read-only; the step updates it in place")
            out.append(a.reshape(-1))
        return out

    def _bind(self, params: List[np.ndarray]) -> None:
        try:
            self._session = _native.Session(
                self.recipe._native,
                self.names,
                [list(s) for s in self.shapes],
                params,
                self._backend,
                self._threads,
            )
        except StepError as e:
            raise StepError(f"recipe `{self.recipe.name}` cannot take these arrays: {e}") from None

    def step(self, params: Any, grads: Any) -> None:
        """One update: ``params`` (a dict by name, or a list in ``shapes`` order) are
        updated in place from ``grads``."""
        if self.recipe.capabilities:
            raise RuntimeError(
                f"recipe `{self.recipe.name}` calls the model during its step "
                f"({', '.join(self.recipe.capabilities)}); anneal.numpy has no model to call: "
                "use anneal.torch.Optimizer with a closure"
            )
        ps = self._arrays(params, "params", writable=True)
        gs = self._arrays(grads, "grads", writable=False)
        if self._session is None:
            self._bind(ps)
        assert self._session is not None
        self._session.step(ps, gs)

    def observe(self, value: float) -> None:
        self._require().observe(float(value))

    def _require(self) -> Any:
        if self._session is None:
            raise RuntimeError("the stepper has not stepped yet (no state to read or restore)")
        return self._session

    @property
    def learning_rates(self) -> List[Optional[float]]:
        """Per group, the learning rate the next step uses."""
        return list(self._require().learning_rates())

    @property
    def skipped_steps(self) -> int:
        return self._require().skipped_steps

    @property
    def backend(self) -> str:
        return self._require().backend

    def state_dict(self) -> Dict[str, Any]:
        """``state``: per tensor name, its element states (arrays of its shape, keyed
        ``stage.state``); ``anneal``: the recipe's hash and the rest of the progress."""
        s = self._require()
        state: Dict[str, Dict[str, np.ndarray]] = {n: {} for n in self.names}
        for key, per_tensor in s.element_states():
            for n, shape, flat in zip(self.names, self.shapes, per_tensor):
                state[n][key] = flat.reshape(shape)
        return {
            "state": state,
            "anneal": {
                "format": _STATE_FORMAT,
                "recipe": self.recipe.name,
                "recipe_hash": self.recipe.hash,
                "progress": s.progress_bytes(),
            },
        }

    def load_state_dict(self, state_dict: Mapping[str, Any], params: Any = None) -> None:
        """Restores ``state_dict()``'s output (``params``: the weights to bind to, when
        the stepper has not stepped yet)."""
        if "anneal" not in state_dict:
            raise ValueError("this is not an anneal stepper state (no 'anneal' entry)")
        meta = state_dict["anneal"]
        if meta.get("recipe_hash") != self.recipe.hash:
            raise ValueError(
                f"the state was saved by recipe `{meta.get('recipe')}`, not this recipe `{self.recipe.name}`"
            )
        if self._session is None:
            if params is None:
                params = [np.zeros(s, dtype=np.float32) for s in self.shapes]
            self._bind(self._arrays(params, "params", writable=False))
        s = self._require()
        elements = []
        for key, _ in s.element_states():
            per = []
            for n, shape in zip(self.names, self.shapes):
                a = np.asarray(state_dict["state"][n][key], dtype=np.float32)
                if a.shape != shape:
                    raise ValueError(f"the saved {key!r} of {n!r} has shape {a.shape}, expected {shape}")
                per.append(np.ascontiguousarray(a).reshape(-1))
            elements.append((key, per))
        s.restore(bytes(meta["progress"]), elements)
