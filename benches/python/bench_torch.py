"""anneal.torch.Optimizer against torch.optim on a real model, in one run.

A character-level language model built only from torch's modules (nn.Embedding, a stack
of nn.TransformerEncoderLayer, nn.Linear; ~10M parameters) is trained on the text this
repository ships (its Markdown), from the same initial weights and batches, with
  * torch: clip_grad_norm_ + AdamW (foreach), and clip_grad_norm_ + AdamW(fused=True);
  * anneal: the same recipe, `clip_grad_norm_ |> AdamW`, as one fused step.
It prints the loss curves' largest relative gap, optimizer-step milliseconds and end-to-end
steps/s; then optimizer steps alone for RAdam, NAdam, Lion and LAMB against torch's fastest
path for each (pytorch_optimizer's for Lion and LAMB, when installed); then the per-step
overhead of the Python call on 200 small tensors.

    python benches/python/bench_torch.py [--steps 50] [--json]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from anneal.torch import Optimizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def corpus() -> torch.Tensor:
    text = ""
    for path in sorted(glob.glob(os.path.join(ROOT, "**", "*.md"), recursive=True)):
        if "/target/" in path:
            continue
        with open(path, encoding="utf-8") as f:
            text += f.read()
    data = text.encode("utf-8")
    return torch.tensor(list(data), dtype=torch.long)


class CharLM(torch.nn.Module):
    def __init__(self, vocab: int = 256, d: int = 384, layers: int = 5, ff: int = 1536, ctx: int = 64) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Embedding(ctx, d)
        layer = torch.nn.TransformerEncoderLayer(d, nhead=6, dim_feedforward=ff, dropout=0.0, batch_first=True)
        self.blocks = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(d)
        self.head = torch.nn.Linear(d, vocab)
        self.register_buffer("mask", torch.nn.Transformer.generate_square_subsequent_mask(ctx), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        h = self.embed(x) + self.pos(torch.arange(t))
        h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
        return self.head(self.norm(h))


RECIPE = """import std.torch.{AdamW, clip_grad_norm_}
recipe lm {
  groups {
    decay    = "*.weight" except "*norm*"
    no_decay = rest
  }
  update = clip_grad_norm_(max_norm: 1.0)
        |> AdamW(lr: 3e-4, betas: [0.9, 0.95], weight_decay: { decay: 0.1, no_decay: 0.0 })
}"""


def torch_groups(model: torch.nn.Module):
    decay = [p for n, p in model.named_parameters() if n.endswith(".weight") and "norm" not in n]
    rest = [p for n, p in model.named_parameters() if not (n.endswith(".weight") and "norm" not in n)]
    return [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]


def train(kind: str, data: torch.Tensor, steps: int, batch: int, ctx: int):
    torch.manual_seed(0)
    model = CharLM(ctx=ctx)
    if kind.startswith("anneal"):
        opt = Optimizer(model.named_parameters(), RECIPE, backend="llvm" if kind == "anneal-llvm" else "cranelift")

        def step():
            opt.step()
    else:
        opt = torch.optim.AdamW(
            torch_groups(model), lr=3e-4, betas=(0.9, 0.95), foreach=kind == "foreach", fused=kind == "fused"
        )

        def step():
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
            opt.step()

    g = torch.Generator().manual_seed(1)
    losses, step_ms = [], []
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(data) - ctx - 1, (batch,), generator=g)
        x = torch.stack([data[i : i + ctx] for i in idx])
        y = torch.stack([data[i + 1 : i + ctx + 1] for i in idx])
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1))
        loss.backward()
        t0 = time.perf_counter()
        step()
        step_ms.append((time.perf_counter() - t0) * 1e3)
        losses.append(loss.item())
    total = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    return {"losses": losses, "step_ms": statistics.median(step_ms), "steps_per_s": steps / total, "params": params}


def time_steps(make, params, reps: int = 15) -> float:
    """Median ms of an optimizer step on fixed gradients."""
    opt, step = make(params)
    for p in params:
        p.grad = torch.randn_like(p) * 1e-2
    step(opt)  # warm-up (JIT, state allocation)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step(opt)
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def optimizer_only():
    torch.manual_seed(0)
    shapes = [(1024, 1024)] * 8 + [(1024,)] * 8
    out = []
    try:
        import pytorch_optimizer as po  # type: ignore[import-not-found]
    except ImportError:
        po = None
    cases = [
        ("RAdam", "RAdam(lr: 1e-3)", lambda ps: torch.optim.RAdam(ps, lr=1e-3, foreach=True), "torch foreach"),
        ("NAdam", "NAdam(lr: 1e-3)", lambda ps: torch.optim.NAdam(ps, lr=1e-3, foreach=True), "torch foreach"),
        ("Lion", "lion(learning_rate: 1e-4)", (lambda ps: po.Lion(ps, lr=1e-4)) if po else None, "pytorch_optimizer"),
        ("LAMB", "lamb(learning_rate: 1e-3)", (lambda ps: po.Lamb(ps, lr=1e-3)) if po else None, "pytorch_optimizer"),
    ]
    for name, call, make_ref, ref_name in cases:
        module = "std.torch" if call[0].isupper() else "std.optax"
        fn = call.split("(")[0]
        recipe = f"import {module}.{{{fn}}}\nrecipe r {{ update = {call} }}"
        ps = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
        opt = Optimizer([(str(i), t) for i, t in enumerate(ps)], recipe)
        ours = time_steps(lambda p, opt=opt: (opt, lambda o: o.step()), ps)
        opt_llvm = Optimizer([(str(i), t) for i, t in enumerate(ps)], recipe, backend="llvm")
        ours_llvm = time_steps(lambda p, opt=opt_llvm: (opt, lambda o: o.step()), ps)
        ref = None
        if make_ref is not None:
            ps2 = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
            ref = time_steps(lambda p, m=make_ref: (m(p), lambda o: o.step()), ps2)
        n = sum(torch.Size(s).numel() for s in shapes)
        out.append(
            {
                "optimizer": name,
                "params": n,
                "anneal_ms": ours,
                "anneal_llvm_ms": ours_llvm,
                "reference": ref_name,
                "reference_ms": ref,
            }
        )
    return out


def small_tensor_overhead():
    ps = [torch.nn.Parameter(torch.randn(64)) for _ in range(200)]
    recipe = "import std.torch.{AdamW}\nrecipe r { update = AdamW(lr: 1e-3) }"
    opt = Optimizer([(str(i), p) for i, p in enumerate(ps)], recipe)
    ours = time_steps(lambda p: (opt, lambda o: o.step()), ps, reps=200)
    qs = [torch.nn.Parameter(torch.randn(64)) for _ in range(200)]
    fused = time_steps(lambda p: (torch.optim.AdamW(p, lr=1e-3, fused=True), lambda o: o.step()), qs, reps=200)
    return {"tensors": 200, "elements_each": 64, "anneal_ms": ours, "torch_fused_ms": fused}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    data = corpus()
    runs = {k: train(k, data, args.steps, args.batch, args.ctx) for k in ("foreach", "fused", "anneal", "anneal-llvm")}
    ref = runs["fused"]["losses"]

    def gap_to(kind):
        return max(abs(a - b) / abs(b) for a, b in zip(runs[kind]["losses"], ref))

    gap = gap_to("anneal")
    torch_gap = gap_to("foreach")
    report = {
        "model": {"params": runs["anneal"]["params"], "text_bytes": len(data), "steps": args.steps},
        "train": {k: {kk: v[kk] for kk in ("step_ms", "steps_per_s")} for k, v in runs.items()},
        "loss_first_last": [ref[0], ref[-1]],
        "loss_max_rel_gap_vs_fused": gap,
        "torch_foreach_max_rel_gap_vs_fused": torch_gap,
        "losses": {k: v["losses"] for k, v in runs.items()},
        "optimizers": optimizer_only(),
        "small_tensors": small_tensor_overhead(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    m = report["model"]
    print(
        f"char LM: {m['params'] / 1e6:.1f}M params, {m['text_bytes']} bytes of text, {m['steps']} steps, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"loss {ref[0]:.4f} -> {ref[-1]:.4f}; largest relative gap of the loss curve to torch fused: "
        f"anneal {gap:.2e}, torch foreach {torch_gap:.2e}"
    )
    print()
    print("| clip_grad_norm_ + AdamW | optimizer step | vs torch fused | end to end |")
    print("|---|---|---|---|")
    fused_ms = runs["fused"]["step_ms"]
    for k, label in (
        ("foreach", "torch, foreach"),
        ("fused", "torch, fused=True"),
        ("anneal", "anneal, Cranelift"),
        ("anneal-llvm", "anneal, LLVM"),
    ):
        r = runs[k]
        print(f"| {label} | {r['step_ms']:.2f} ms | {fused_ms / r['step_ms']:.2f}x | {r['steps_per_s']:.2f} steps/s |")
    print()
    print("| optimizer step alone (8.4M params) | torch's fastest | anneal, Cranelift | anneal, LLVM | best speed-up |")
    print("|---|---|---|---|---|")
    for o in report["optimizers"]:
        ref_ms = o["reference_ms"]
        best = min(o["anneal_ms"], o["anneal_llvm_ms"])
        ratio = f"{ref_ms / best:.2f}x" if ref_ms else "-"
        ref_s = f"{ref_ms:.2f} ms ({o['reference']})" if ref_ms else "n/a (pytorch_optimizer not installed)"
        print(f"| {o['optimizer']} | {ref_s} | {o['anneal_ms']:.2f} ms | {o['anneal_llvm_ms']:.2f} ms | {ratio} |")
    s = report["small_tensors"]
    print()
    print(
        f"200 tensors of 64 elements, AdamW: anneal {s['anneal_ms'] * 1e3:.0f} us per step (Python call included), "
        f"torch fused {s['torch_fused_ms'] * 1e3:.0f} us"
    )


if __name__ == "__main__":
    main()
