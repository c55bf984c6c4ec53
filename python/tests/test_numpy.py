"""anneal.numpy.Stepper: arrays stepped in place, against the update rule written in NumPy."""

from __future__ import annotations

import numpy as np
import pytest

import anneal
from anneal.numpy import Stepper

ADAM = """import std.torch.{Adam}
recipe r { update = Adam(lr: 0.01, betas: [0.9, 0.999], eps: 1e-8) }"""


def adam_reference(p, gs, lr=0.01, b1=0.9, b2=0.999, eps=1e-8):
    """torch.optim.Adam's rule (FORMAT-TRAIN.md §5) in float64."""
    p = p.astype(np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(gs, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - (lr / (1 - b1**t)) * m / (np.sqrt(v) / np.sqrt(1 - b2**t) + eps)
    return p


def test_adam_on_arrays_in_place():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    w0, b0 = w.copy(), b.copy()
    gw = [rng.standard_normal((5, 4)).astype(np.float32) for _ in range(8)]
    gb = [rng.standard_normal(4).astype(np.float32) for _ in range(8)]
    s = Stepper(ADAM, {"w": (5, 4), "b": (4,)})
    ptr = w.ctypes.data
    for g1, g2 in zip(gw, gb):
        s.step({"w": w, "b": b}, {"w": g1, "b": g2})
    assert w.ctypes.data == ptr
    np.testing.assert_allclose(w, adam_reference(w0, gw), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, adam_reference(b0, gb), rtol=1e-5, atol=1e-6)
    assert s.learning_rates == [pytest.approx(0.01)]


def test_state_dict_round_trip_resumes_exactly():
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(6).astype(np.float32) for _ in range(6)]
    a = np.ones(6, dtype=np.float32)
    sa = Stepper(ADAM, {"x": (6,)})
    for g in grads:
        sa.step([a], [g])
    b = np.ones(6, dtype=np.float32)
    sb = Stepper(ADAM, {"x": (6,)})
    for g in grads[:3]:
        sb.step([b], [g])
    saved = sb.state_dict()
    c = b.copy()
    sc = Stepper(ADAM, {"x": (6,)})
    sc.load_state_dict(saved, params=[c])
    for g in grads[3:]:
        sc.step([c], [g])
    assert np.array_equal(a, c)
    other = Stepper("import std.torch.{SGD}\nrecipe s { update = SGD(lr: 0.1) }", {"x": (6,)})
    with pytest.raises(ValueError, match="not this recipe"):
        other.load_state_dict(saved)


def test_bad_arrays_are_refused_with_the_reason():
    s = Stepper(ADAM, {"w": (2, 3)})
    g = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="float64"):
        s.step({"w": np.zeros((2, 3))}, {"w": g})
    with pytest.raises(ValueError, match="shape"):
        s.step({"w": np.zeros((3, 2), dtype=np.float32)}, {"w": g})
    with pytest.raises(ValueError, match="C-contiguous"):
        s.step({"w": np.zeros((3, 2), dtype=np.float32).T}, {"w": g})
    ro = np.zeros((2, 3), dtype=np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        s.step({"w": ro}, {"w": g})
    with pytest.raises(ValueError, match="no array"):
        s.step({}, {"w": g})
    with pytest.raises(TypeError, match="numpy array"):
        s.step({"w": [[0.0] * 3] * 2}, {"w": g})
    with pytest.raises(TypeError):
        Stepper(ADAM, {"w": ("a",)})
    w = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(anneal.StepError, match="shared with a parameter"):
        s.step({"w": w}, {"w": w})
    with pytest.raises(RuntimeError, match="model"):
        Stepper("import std.torch.{SAM, SGD}\nrecipe s { update = SAM() |> SGD(lr: 0.1) }", {"w": (2,)}).step(
            [np.zeros(2, dtype=np.float32)], [np.zeros(2, dtype=np.float32)]
        )
