"""Matrix optimizers on GPT-2 small's matrices: anneal's step against the library each
recipe follows, measured in one run on the same shapes and threads.

  * Muon: `benches/recipes/muon.anneal` against `torch.optim.Muon` (torch 2.15; its
    Newton–Schulz iteration runs in bfloat16, anneal's in float32);
  * Shampoo: `benches/recipes/shampoo.anneal` against pytorch_optimizer's `Shampoo` with
    the same keywords (inverse roots refreshed every 10 steps);
  * SOAP: `benches/recipes/soap.anneal` against pytorch_optimizer's `SOAP` (defaults).

The shapes are `--layers` layers of 768×768 ×4, 768×3072 and 3072×768 (GPT-2 small has
12). A recipe that refreshes is timed over whole periods of 10 steps. anneal's figures
come from `anneal bench --shapes ... --json`, which also times the GEMM alone on the
products the step computed (the share of the GEMM peak). Fastest of the runs, each side.

    python benches/python/bench_matrix.py [--layers 1] [--threads 2] [--only muon,soap]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAYER = [(768, 768)] * 4 + [(768, 3072), (3072, 768)]


def torch_optimizer(name: str, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if name == "muon":
        return torch.optim.Muon(params, lr=0.02)
    import pytorch_optimizer

    if name == "shampoo":
        return pytorch_optimizer.Shampoo(params, lr=1e-3, preconditioning_compute_steps=10, matrix_eps=1e-4)
    return pytorch_optimizer.SOAP(params)


def time_torch(name: str, layers: int, period: int, runs: int) -> float:
    """Milliseconds per step: the fastest of `runs` runs of `period` steps, after one."""
    g = torch.Generator().manual_seed(0)
    shapes = LAYER * layers
    params = [torch.nn.Parameter(torch.randn(*s, generator=g) * 0.05) for s in shapes]
    grads = [[torch.randn(*s, generator=g) * 1e-3 for s in shapes] for _ in range(2)]
    opt = torch_optimizer(name, params)

    def steps() -> None:
        for k in range(period):
            for p, gr in zip(params, grads[k % 2]):
                p.grad = gr
            opt.step()

    steps()
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        steps()
        best = min(best, time.perf_counter() - t)
    return best * 1e3 / period


def anneal_bench(name: str, layers: int, threads: int, period: int) -> dict:
    exe = os.path.join(ROOT, "target", "release", "anneal")
    recipe = os.path.join(ROOT, "benches", "recipes", f"{name}.anneal")
    cmd = [exe, "bench", recipe, "--shapes", "gpt2-small", "--layers", str(layers)]
    cmd += ["--threads", str(threads), "--steps", str(period), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="muon,shampoo,soap")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.only.split(","):
        period = 1 if name == "muon" else 10
        ours = anneal_bench(name, args.layers, args.threads, period)
        theirs = time_torch(name, args.layers, period, args.runs)
        rows.append(
            {
                "optimizer": name,
                "layers": args.layers,
                "threads": args.threads,
                "anneal_ms": ours["step_ms"],
                "reference_ms": theirs,
                "speedup": theirs / ours["step_ms"],
                "gemm_share": ours["ratio"],
                "step_gflops": ours["step_gflops"],
                "gemm_gflops": ours["gemm_gflops"],
            }
        )
    if args.json:
        print(json.dumps(rows))
        return
    ref = {"muon": "torch.optim.Muon", "shampoo": "pytorch_optimizer.Shampoo", "soap": "pytorch_optimizer.SOAP"}
    print(f"GPT-2 small matrices, {args.layers} layer(s), {args.threads} thread(s); ms per step")
    for r in rows:
        print(
            f"  {r['optimizer']:8} anneal {r['anneal_ms']:9.1f}   {ref[r['optimizer']]:26} {r['reference_ms']:9.1f}"
            f"   speedup {r['speedup']:5.2f}x   GEMM share {r['gemm_share']:.2f}"
            f" ({r['step_gflops']:.0f} of {r['gemm_gflops']:.0f} GFLOP/s)"
        )


if __name__ == "__main__":
    main()
