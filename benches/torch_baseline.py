#!/usr/bin/env python3
"""PyTorch's AdamW update on the tensors `anneal bench` uses, for a side-by-side table.

Runs only when torch is installed (`pip install torch`); otherwise says so and exits 0.
Times torch.optim.AdamW with `fused=True` and `foreach=True`, and clip_grad_norm_ + fused
AdamW, on 16M f32 parameters in 8 tensors (change with --params/--tensors), with the
thread count of `anneal bench --threads` (default 2). The roofline is the same kind of
plain loop `anneal bench` measures, written in torch as in-place ops on the same bytes
(read grad, read-modify-write three buffers): so each ratio compares like with like.
Also RAdam and NAdam with `foreach=True` (torch has no fused kernel for them). Then it runs
`anneal bench` on benches/recipes/{adamw,clip_adamw_finite,radam,lion,lamb}.anneal with the
same sizes and prints its line, so the two can be read side by side.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import time

try:
    import torch
except ImportError:
    print("torch is not installed: skipping the PyTorch baseline (pip install torch)")
    sys.exit(0)

ROOT = pathlib.Path(__file__).resolve().parent.parent

ap = argparse.ArgumentParser()
ap.add_argument("--params", type=int, default=16 << 20)
ap.add_argument("--tensors", type=int, default=8)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--seconds", type=float, default=2.0)
args = ap.parse_args()
torch.set_num_threads(args.threads)

sizes = [args.params // args.tensors + (1 if t < args.params % args.tensors else 0)
         for t in range(args.tensors)]
params = [torch.nn.Parameter(torch.linspace(-0.05, 0.05, n)) for n in sizes]
for p in params:
    p.grad = torch.linspace(-0.004, 0.004, p.numel())


def fastest(step, seconds):
    """Fastest of repeated calls (interference only adds time), after two warm-ups."""
    step()
    step()
    best, start, n = float("inf"), time.perf_counter(), 0
    while n < 5 or (time.perf_counter() - start < seconds and n < 200):
        t = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t)
        n += 1
    return best * 1e3


# The roofline: read one buffer, read-modify-write three, in place (28 bytes/param).
g = [torch.ones(n) for n in sizes]
a, b, c = ([torch.zeros(n) for n in sizes] for _ in range(3))


def roofline():
    torch._foreach_add_(a, g)
    torch._foreach_add_(b, g)
    torch._foreach_add_(c, g)


# The same 28 bytes/param in foreach ops is three sweeps (each reads g and one buffer and
# writes it back: 3 × 12 = 36 bytes/param), so scale to the bytes actually moved.
roof_ms = fastest(roofline, args.seconds)
roof_gbps = 36 * args.params / (roof_ms * 1e6)

rows = []
for name, cls, kw, clip in [
        ("AdamW fused=True", torch.optim.AdamW, {"fused": True, "weight_decay": 1e-2}, False),
        ("AdamW foreach=True", torch.optim.AdamW, {"foreach": True, "weight_decay": 1e-2}, False),
        ("clip_grad_norm_ + AdamW fused=True", torch.optim.AdamW,
         {"fused": True, "weight_decay": 1e-2}, True),
        # No fused kernel in torch for these: foreach is its fastest path.
        ("RAdam foreach=True", torch.optim.RAdam, {"foreach": True}, False),
        ("NAdam foreach=True", torch.optim.NAdam, {"foreach": True}, False)]:
    try:
        opt = cls(params, lr=1e-3, **kw)
    except (RuntimeError, TypeError) as e:
        rows.append((name, None, str(e)))
        continue

    def step():
        if clip:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    ms = fastest(step, args.seconds)
    moved = (32 if clip else 28) * args.params
    gbps = moved / (ms * 1e6)
    rows.append((name, ms, f"{gbps:6.1f} GB/s  ratio {gbps / roof_gbps:4.2f}"))

print(f"torch {torch.__version__}: {args.params} params in {args.tensors} tensors, "
      f"{args.threads} threads; roofline {roof_gbps:.1f} GB/s")
for name, ms, what in rows:
    if ms is None:
        print(f"  {name:36s} unavailable: {what}")
    else:
        print(f"  {name:36s} {ms:8.2f} ms  {what}")

anneal = ROOT / "target/release/anneal"
if not anneal.exists():
    print("build anneal first (cargo build --release) to print its figures here")
    sys.exit(0)
for recipe in ["adamw", "clip_adamw_finite", "radam", "lion", "lamb"]:
    out = subprocess.run([str(anneal), "bench", str(ROOT / f"benches/recipes/{recipe}.anneal"),
                          "--params", str(args.params), "--tensors", str(args.tensors),
                          "--threads", str(args.threads), "--json"],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    print(f"  anneal {recipe:29s} {r['step_ms']:8.2f} ms  {r['gbps']:6.1f} GB/s  ratio "
          f"{r['ratio']:4.2f} (its own roofline {r['roofline_gbps']:.1f} GB/s)")
