#!/usr/bin/env python3
"""The digits MLP of examples/digits_mlp.anneal in PyTorch, for a side-by-side timing.

Runs only when torch and numpy are installed (`pip install torch numpy`); prints PyTorch's
steps/s and test accuracy, then runs `anneal run` on the same recipe and prints its line.
Same setup: standardized digits, 80/20 split, batch 64, 440 steps (20 epochs), AdamW 3e-3
with weight decay 1e-2, 50-step linear warmup then cosine, clip_grad_norm_ 1.0, one thread.
The splits and initial weights are drawn differently, so the accuracies differ slightly.
"""
import pathlib
import subprocess
import sys
import time

try:
    import numpy as np
    import torch
except ImportError:
    print("torch or numpy is not installed: skipping the PyTorch baseline")
    sys.exit(0)

ROOT = pathlib.Path(__file__).resolve().parent.parent
data = np.loadtxt(ROOT / "examples/data/digits.csv", delimiter=",", skiprows=1, dtype=np.float64)
x, y = data[:, :-1], data[:, -1].astype(np.int64)
std = x.std(axis=0)
std[std == 0] = 1
x = ((x - x.mean(axis=0)) / std).astype(np.float32)
rng = np.random.default_rng(0)
perm = rng.permutation(len(x))
n_test = round(len(x) * 0.2)
test, train = perm[:n_test], perm[n_test:]

torch.manual_seed(0)
torch.set_num_threads(1)
model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 10))
opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
sched = torch.optim.lr_scheduler.SequentialLR(
    opt,
    [torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.02, total_iters=50),
     torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=390)],
    milestones=[50])
xt, yt = torch.from_numpy(x), torch.from_numpy(y)
steps, batch = 440, 64
batches = []
while len(batches) < steps:
    p = rng.permutation(train)
    batches += [p[i:i + batch] for i in range(0, len(p) - batch + 1, batch)]
start = time.perf_counter()
for rows in batches[:steps]:
    idx = torch.from_numpy(rows)
    loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
seconds = time.perf_counter() - start
with torch.no_grad():
    acc = (model(xt[test]).argmax(1) == yt[test]).float().mean().item()
print(f"pytorch {torch.__version__}: {steps} steps in {seconds:.2f} s ({steps / seconds:.0f} steps/s), test accuracy {acc:.4f}")
anneal = subprocess.run(
    ["cargo", "run", "--release", "-q", "--", "run", "examples/digits_mlp.anneal",
     "--model", "mlp:64,128,10:tanh", "--data", "examples/data/digits.csv"],
    cwd=ROOT, capture_output=True, text=True)
print("anneal:", anneal.stdout.strip() or anneal.stderr.strip())
