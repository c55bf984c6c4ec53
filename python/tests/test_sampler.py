"""anneal.torch.CurriculumSampler: the recipe's curriculum as a torch batch sampler,
checked against the pace and sampling rules of spec/semantics.md."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from anneal.torch import CurriculumSampler

LINEAR = """import std.torch.{SGD}
recipe c {
  steps 20
  curriculum {
    difficulty = loss
    pace = linear(start: 0.25, total_steps: 10)
    refresh = 1
  }
  update = SGD(lr: 0.1)
}"""


def test_batches_come_from_the_easiest_visible_fraction():
    n = 40
    s = CurriculumSampler(LINEAR, n, seed=3, batch_size=4)
    # Example i has loss i: the easiest are the lowest indices.
    s.observe(list(range(n)), [float(i) for i in range(n)])
    for t, batch in enumerate(s):
        f = min(1.0, 0.25 + 0.75 * t / 10)  # linear pace
        assert s.visible_fraction == pytest.approx(f)
        visible = math.ceil(f * n)
        assert len(batch) == 4 and len(set(batch)) == 4
        assert all(0 <= i < visible for i in batch), (t, batch, visible)
    assert len(s) == 0


def test_works_with_a_dataloader_and_resumes_exactly():
    data = TensorDataset(torch.arange(30.0))
    a = CurriculumSampler(LINEAR, 30, seed=1, batch_size=5)
    b = CurriculumSampler(LINEAR, 30, seed=1, batch_size=5)
    loader = DataLoader(data, batch_sampler=a)
    straight = [x[0].tolist() for x in loader]
    assert len(straight) == 20 and all(len(x) == 5 for x in straight)
    it = iter(b)
    first = [next(it) for _ in range(7)]
    saved = b.state_dict()
    c = CurriculumSampler(LINEAR, 30, seed=1, batch_size=5)
    c.load_state_dict(saved)
    rest = list(c)
    assert [[float(i) for i in x] for x in first + rest] == straight


OHEM = """import std.torch.{SGD}
recipe o {
  steps 5
  curriculum { difficulty = loss
               sampling = ohem(top: 0.5) }
  update = SGD(lr: 0.1)
}"""


def test_ohem_keeps_the_hardest_half_of_a_batch():
    s = CurriculumSampler(OHEM, 16, batch_size=4)
    next(iter(s))
    kept = s.select(torch.tensor([0.1, 0.9, 0.5, 0.2]))
    assert sorted(kept) == [1, 2]


def test_bad_arguments():
    with pytest.raises(ValueError, match="no curriculum"):
        CurriculumSampler("import std.torch.{SGD}\nrecipe r { steps 3 update = SGD(lr: 0.1) }", 10, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        CurriculumSampler(LINEAR, 10)
    with pytest.raises(ValueError, match="num_examples"):
        CurriculumSampler(LINEAR, 0, batch_size=2)
    s = CurriculumSampler(LINEAR, 10, batch_size=2)
    with pytest.raises(ValueError, match="not an example"):
        s.observe([10], [1.0])
    with pytest.raises(ValueError, match="another recipe"):
        s.load_state_dict({"step": 0, "sampler": b"", "recipe_hash": "0"})
