"""SOAP (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam",
Algorithm 3) transcribed into float64 NumPy from the paper, with the two details of the
authors' code that the paper leaves out: the first step only starts the preconditioner
(its eigenvectors, eigenvalues descending, become the bases), and a refresh first sorts
each basis by its estimated eigenvalues diag(Qᵀ P Q), permuting Adam's second moment with
it, before one power iteration Q ← qr(P Q).

It shares no code with anneal (the recipe `std.research.soap`) or with pytorch_optimizer:
`test_soap.py` checks it against pytorch_optimizer's `SOAP`, and `python soap_reference.py
OUT` writes `compiler/tests/soap/reference.json`, the fixture `compiler/tests/soap.rs`
runs on every back end (`test_soap.py` checks the committed file is what this writes).

A tensor is viewed as a matrix as anneal views it: a scalar 1 × 1, a vector one row, a
tensor of rank > 2 with its leading dimensions flattened into the rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parents[2] / "compiler" / "tests" / "soap" / "reference.json"


def view(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    return int(np.prod(shape[:-1])), shape[-1]


def soap(
    w0: np.ndarray,
    grads: list[np.ndarray],
    lr: float = 3e-3,
    b1: float = 0.95,
    b2: float = 0.95,
    shampoo_beta: float | None = None,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    precondition_frequency: int = 10,
    max_precondition_dim: int = 10000,
    precondition_1d: bool = False,
    correct_bias: bool = True,
    normalize_gradient: bool = False,
    maximize: bool = False,
) -> list[np.ndarray]:
    """The parameters after each step, from `w0` and one gradient per step."""
    beta = b2 if shampoo_beta is None else shampoo_beta
    rank = w0.ndim
    rows, cols = view(w0.shape)
    left = rank >= 2 and rows <= max_precondition_dim
    right = (rank >= 2 or (rank == 1 and precondition_1d)) and cols <= max_precondition_dim
    w = np.asarray(w0, np.float64).reshape(rows, cols).copy()
    m, v = np.zeros((rows, cols)), np.zeros((rows, cols))
    big_l, big_r = np.zeros((rows, rows)), np.zeros((cols, cols))
    ql, qr = np.eye(rows), np.eye(cols)
    out = []
    for step, g in enumerate(grads, start=1):
        g = np.asarray(g, np.float64).reshape(rows, cols) * (-1.0 if maximize else 1.0)
        t = step - 1
        if step > 1:
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * (ql.T @ g @ qr) ** 2
            n = ql @ ((ql.T @ m @ qr) / (np.sqrt(v) + eps)) @ qr.T
            if normalize_gradient:
                n = n / (np.sqrt(np.mean(n * n)) + eps)
            size = lr * np.sqrt(1 - b2**t) / (1 - b1**t) if correct_bias else lr
            w = (w - size * n) * (1 - lr * weight_decay)
        if left:
            big_l = beta * big_l + (1 - beta) * (g @ g.T)
        if right:
            big_r = beta * big_r + (1 - beta) * (g.T @ g)
        if step == 1:
            if left:
                ql = np.linalg.eigh(big_l)[1][:, ::-1]
            if right:
                qr = np.linalg.eigh(big_r)[1][:, ::-1]
        elif t % precondition_frequency == 0:
            if left:
                order = np.argsort(-np.diag(ql.T @ big_l @ ql), kind="stable")
                v = v[order, :]
                ql = np.linalg.qr(big_l @ ql[:, order])[0]
            if right:
                order = np.argsort(-np.diag(qr.T @ big_r @ qr), kind="stable")
                v = v[:, order]
                qr = np.linalg.qr(big_r @ qr[:, order])[0]
        out.append(w.reshape(w0.shape).copy())
    return out


# Well-conditioned problems: gradients drawn independently of the parameters, so every
# preconditioner is full rank or has a null space of one dimension (a basis unique up to
# signs, which SOAP's update does not see) — no eigenvalue repeats. (A 3 × 5 gradient
# would leave Gᵀ G a null space of two dimensions, in which any basis is an eigenbasis.)
SHAPES = {"w": (4, 4), "a": (4, 5), "b": (6,), "c": (2, 2, 3), "s": ()}
STEPS = 12
CASES = {
    "defaults_lr": {"lr": 1e-2, "precondition_frequency": 3},
    "betas_decay_normalized": {
        "lr": 1e-2,
        "b1": 0.9,
        "b2": 0.99,
        "shampoo_beta": 0.8,
        "weight_decay": 0.1,
        "normalize_gradient": True,
        "precondition_frequency": 2,
    },
    "uncorrected_maximize_capped": {
        "lr": 5e-3,
        "correct_bias": False,
        "maximize": True,
        "eps": 1e-6,
        "max_precondition_dim": 4,
        "precondition_frequency": 4,
    },
}


def problem(seed: int) -> tuple[dict[str, np.ndarray], dict[str, list[np.ndarray]]]:
    """Float32-representable starting weights and gradients for every tensor of SHAPES."""
    rng = np.random.default_rng(seed)
    w0 = {k: rng.standard_normal(s).astype(np.float32).astype(np.float64) for k, s in SHAPES.items()}
    grads = {
        k: [rng.standard_normal(s).astype(np.float32).astype(np.float64) for _ in range(STEPS)]
        for k, s in SHAPES.items()
    }
    return w0, grads


def fixture() -> dict:
    """Every case of CASES on `problem(i)`: hyperparameters in the recipe's names, the
    tensors' shapes, starting weights, gradients and the weights after every step."""
    out = {"note": "written by python/tests/soap_reference.py; do not edit", "cases": []}
    for i, (name, hp) in enumerate(CASES.items()):
        w0, grads = problem(i)
        tensors = []
        for k, s in SHAPES.items():
            after = soap(w0[k], grads[k], **hp)
            tensors.append(
                {
                    "name": k,
                    "shape": list(s),
                    "init": np.ravel(w0[k]).tolist(),
                    "grads": [np.ravel(g).tolist() for g in grads[k]],
                    "expected": [np.ravel(p).tolist() for p in after],
                }
            )
        recipe = {("learning_rate" if k == "lr" else k): v for k, v in hp.items()}
        out["cases"].append({"name": name, "hyperparameters": recipe, "tensors": tensors})
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fixture()) + "\n")
    print(f"wrote {path}")
