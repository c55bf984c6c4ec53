"""The README's "From PyTorch" loop: the recipe `anneal run` trains, on a torch model.

    python examples/torch_digits.py
"""

import numpy as np
import torch
import torch.nn.functional as F

import anneal.torch

data = np.loadtxt("examples/data/digits.csv", delimiter=",", skiprows=1, dtype=np.float32)
x = torch.from_numpy((data[:, :-1] - data[:, :-1].mean(0)) / (data[:, :-1].std(0) + 1e-8))
y = torch.from_numpy(data[:, -1]).long()
torch.manual_seed(0)
order = torch.randperm(len(y))
train, test = order[:1437], order[1437:]
model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 10))
opt = anneal.torch.Optimizer(model.named_parameters(), "examples/digits_mlp.anneal")

for step in range(440):
    rows = train[torch.randint(0, len(train), (64,))]
    opt.zero_grad()
    loss = F.cross_entropy(model(x[rows]), y[rows])
    loss.backward()
    opt.step()
    if (step + 1) % 88 == 0:
        print(f"step {step + 1:3}  loss {loss.item():.4f}  lr {opt.param_groups[0]['lr']:.3e}")

accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
print(f"{opt.backend} step, test accuracy {accuracy:.4f}")
