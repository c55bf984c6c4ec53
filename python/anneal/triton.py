"""The Triton back end's launcher: a recipe's fused step as Triton kernels on torch tensors.

anneal writes one ``@triton.jit`` kernel per pass of the recipe's fused step
(``anneal build --emit triton`` prints the module). The Rust side keeps the host part
of the step — schedules, reductions' combination, skips, scalar states — and asks a
:class:`Launcher` to run each pass, one launch over every tensor: it receives each
tensor's scalar row and the addresses and sizes of the buffers the pass reads and
writes, and returns the reductions' partials, one row per program.

On CPU tensors the kernels run under Triton's interpreter (NumPy, one program at a
time): a check of the kernels' semantics, not a fast path. The module is loaded once per
process and kernel text; Triton then compiles each kernel once, whatever the learning
rate, since hyperparameters are values in the scalar table.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import tempfile
from types import ModuleType
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch

__all__ = ["Launcher", "compile_for_gpu", "load_module", "module_of"]

_MODULES: Dict[Tuple[str, bool], ModuleType] = {}


def _cache_dir() -> str:
    base = os.environ.get("ANNEAL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "anneal")
    path = os.path.join(base, "triton")
    try:
        os.makedirs(path, exist_ok=True)
        return path
    except OSError:
        path = os.path.join(tempfile.gettempdir(), f"anneal-triton-{os.getuid()}")
        os.makedirs(path, exist_ok=True)
        return path


def _write_atomically(path: str, text: str) -> None:
    # Triton reads a kernel's source from its file, so the module lives on disk: written
    # to a temporary name, flushed to disk and renamed, so a reader never sees half of it.
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_module(source: str, *, interpret: bool) -> ModuleType:
    """The module of kernel text ``source``, imported once per process; ``interpret``
    loads it for Triton's interpreter (CPU tensors) instead of the GPU compiler."""
    key = (hashlib.sha256(source.encode()).hexdigest()[:24], interpret)
    if key in _MODULES:
        return _MODULES[key]
    path = os.path.join(_cache_dir(), f"anneal_{key[0]}.py")
    try:
        with open(path, encoding="utf-8") as f:
            current = f.read() == source
    except OSError:
        current = False
    if not current:
        _write_atomically(path, source)
    name = f"anneal_triton_{key[0]}_{'interp' if interpret else 'gpu'}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import the Triton kernels from {path}")
    module = importlib.util.module_from_spec(spec)
    # `triton.jit` picks the interpreter or the compiler when a kernel is defined.
    with _interpreting(interpret):
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    _MODULES[key] = module
    return module


@contextlib.contextmanager
def _interpreting(interpret: bool) -> Iterator[None]:
    """Triton's knob for the interpreter, set for the block: the interpreter reads it again
    while it runs a kernel (for the library's own jit functions, such as ``tl.sum``'s)."""
    import triton

    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = interpret
        yield


class Launcher:
    """Runs the passes of one recipe's kernels (``passes``: what anneal says of each)."""

    def __init__(self, source: str, passes: Sequence[Dict[str, Any]], *, interpret: bool = True) -> None:
        if not interpret:
            raise ValueError(
                "the Triton back end steps CPU tensors through Triton's interpreter so far; "
                "CUDA tensors are not supported yet"
            )
        self.source = source
        self.interpret = interpret
        self.passes = list(passes)
        self.module = load_module(source, interpret=interpret)
        self.kernels = [getattr(self.module, p["name"]) for p in self.passes]
        #: Kernel launches so far (one per pass and tensor).
        self.launches = 0

    def run(self, p: int, table: List[List[float]], addrs: List[List[int]], sizes: List[int]) -> List[List[float]]:
        """Pass ``p`` over every tensor in one launch: ``table[t]`` is tensor t's scalar
        row, ``addrs[t]`` the addresses of its buffers, ``sizes[t]`` its element count.
        Returns each tensor's partials, flat, one row of the pass's reductions per
        program (empty for a map)."""
        info = self.passes[p]
        kernel = self.kernels[p]
        nred = len(info["reductions"])
        block = int(info["block"])
        nbufs = len(info["bufs"])
        counts = [-(-n // block) if nred == 0 else max(1, -(-n // block)) for n in sizes]
        tiles = [v for t, c in enumerate(counts) for j in range(c) for v in (t, j)]
        programs = len(tiles) // 2
        if programs == 0:
            return [[] for _ in sizes]
        if any(len(row) != nbufs for row in addrs):
            raise ValueError(f"pass {p} takes {nbufs} buffers per tensor")
        slots = int(info["slots"])
        flat = [x for row in table for x in row[:slots]]
        scalars = torch.tensor(flat or [0.0], dtype=torch.float32)
        args: List[Any] = [
            scalars,
            torch.tensor([a for row in addrs for a in row] or [0], dtype=torch.int64),
            torch.tensor(sizes, dtype=torch.int64),
            torch.tensor(tiles, dtype=torch.int32),
        ]
        partials = None
        if nred:
            partials = torch.empty(programs * nred, dtype=torch.float64)
            args.append(partials)
        # The interpreter computes with NumPy, which warns where IEEE arithmetic gives
        # an infinity or a NaN (log2(0) in a pow); those values are the step's own.
        with _interpreting(self.interpret), np.errstate(all="ignore"):
            kernel[(programs,)](*args, BLOCK=block, enable_fp_fusion=False)
        self.launches += 1
        if partials is None:
            return [[] for _ in sizes]
        values = partials.tolist()
        out: List[List[float]] = []
        at = 0
        for c in counts:
            out.append(values[at : at + c * nred])
            at += c * nred
        return out


def module_of(recipe: Any) -> Tuple[str, List[Dict[str, Any]]]:
    """``recipe``'s fused step as a Triton module: its source (what ``anneal build --emit
    triton`` prints) and one dict per kernel (name, kind, buffers, scalar slots,
    reductions, block size). Raises :class:`anneal.StepError` for a recipe with no
    fused step."""
    from . import as_recipe

    return as_recipe(recipe)._native.triton_module()


def compile_for_gpu(source: str, passes: Sequence[Dict[str, Any]], *, arch: int = 90) -> Dict[str, str]:
    """Compiles every kernel of ``source`` for an NVIDIA GPU of compute capability ``arch``
    (90: H100, 80: A100) as a launch would — Triton's compiler, then ptxas — with no GPU
    present. Returns the PTX by kernel name; raises where a kernel does not compile."""
    import triton
    from triton.backends.compiler import GPUTarget

    module = load_module(source, interpret=False)
    target = GPUTarget("cuda", arch, 32)
    out: Dict[str, str] = {}
    for info in passes:
        fn = getattr(module, info["name"])
        signature = {"s": "*fp32", "ptrs": "*i64", "sizes": "*i64", "tiles": "*i32"}
        if info["reductions"]:
            signature["partials"] = "*fp64"
        signature["BLOCK"] = "constexpr"
        src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs={"BLOCK": int(info["block"])})
        compiled = triton.compile(src, target=target, options={"enable_fp_fusion": False})
        out[info["name"]] = compiled.asm["ptx"]
    return out
