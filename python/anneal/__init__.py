"""anneal for Python: checked, fused training recipes on PyTorch modules and NumPy arrays.

``anneal.load(path)`` and ``anneal.compile(source)`` check a recipe (the same file
``anneal check`` and ``anneal run`` read) and return a :class:`Recipe`;
``anneal.torch.Optimizer`` runs its compiled update step on a model's parameters in place,
``anneal.numpy.Stepper`` on arrays.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Union

from . import _native

__all__ = ["Recipe", "RecipeError", "StepError", "compile", "load", "__version__"]

__version__: str = _native.__version__

#: A step, binding or optimizer state that anneal refused (a ``ValueError``).
StepError = _native.StepError


class RecipeError(ValueError):
    """A recipe that does not check.

    ``str(err)`` is the report ``anneal check`` prints; ``err.diagnostics`` holds the same
    findings as dicts with ``code``, ``message``, ``file``, ``line``, ``column`` and
    ``help`` (plus ``severity``, ``label``, ``start`` and ``end``).
    """

    def __init__(self, rendered: str, diagnostics: List[Dict[str, Any]]) -> None:
        super().__init__(rendered)
        self.rendered = rendered
        self.diagnostics = diagnostics

    def __str__(self) -> str:
        return self.rendered


class Recipe:
    """A checked recipe: its name, steps, parameter groups and what it needs of a model."""

    def __init__(self, native: Any, source: str, file: str) -> None:
        self._native = native
        self.source = source
        self.file = file

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def steps(self) -> Optional[int]:
        """The recipe's ``steps`` (the schedules' horizon), or None when it gives none."""
        return self._native.steps

    @property
    def groups(self) -> List[str]:
        """The parameter groups' names, in order (empty: one implicit group)."""
        return list(self._native.groups)

    @property
    def capabilities(self) -> List[str]:
        """What a step needs from the model besides gradients: ``grad_at``, ``hvp``,
        ``loss_closure`` (each means ``step`` takes a closure)."""
        return list(self._native.capabilities)

    @property
    def param_dtype(self) -> str:
        """The storage type of the model's weights: ``f32``, ``bf16`` or ``f16``."""
        return self._native.param_dtype

    @property
    def hash(self) -> str:
        """Ties saved optimizer states to this recipe and the library it uses."""
        return self._native.hash

    def explain(self) -> str:
        """The fused step's passes, buffers and bytes per parameter (``anneal build
        --explain``), or why the recipe runs on the interpreter."""
        return self._native.explain()

    def __repr__(self) -> str:
        return f"<anneal.Recipe {self.name!r} from {self.file}>"


def compile(source: str, name: Optional[str] = None, *, file: str = "<recipe>") -> Recipe:
    """Checks recipe source text; ``name`` picks a recipe when the text has several.

    Raises :class:`RecipeError` with every mistake at once.
    """
    if not isinstance(source, str):
        raise TypeError(f"compile() takes recipe source text (str), not {type(source).__name__}")
    try:
        native = _native.compile(source, file, name)
    except _native.CompileError as e:
        rendered, diagnostics = e.args
        raise RecipeError(rendered, json.loads(diagnostics)) from None
    return Recipe(native, source, file)


def load(path: Union[str, os.PathLike[str]], name: Optional[str] = None) -> Recipe:
    """Reads and checks a recipe file (``.anneal``)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise FileNotFoundError(f"cannot read recipe {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise RecipeError(f"error: {path} is not UTF-8 text\n", []) from None
    return compile(text, name, file=path)


def as_recipe(recipe: Union[Recipe, str, os.PathLike[str]]) -> Recipe:
    """A Recipe as given, read from a path, or compiled from source text."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, os.PathLike):
        return load(recipe)
    if isinstance(recipe, str):
        # Source text has braces; a path does not (and usually ends in .anneal).
        if "{" not in recipe and (recipe.endswith(".anneal") or os.path.exists(recipe)):
            return load(recipe)
        return compile(recipe)
    raise TypeError(
        f"recipe must be an anneal.Recipe, a path to a .anneal file or recipe source text, not {type(recipe).__name__}"
    )
