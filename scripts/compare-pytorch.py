#!/usr/bin/env python3
"""Times reglab's training steps against PyTorch's on the CPU, case by case.

Cases (both f32, Adam lr 1e-3, random Gaussian inputs drawn once from a seeded generator):

  mlp-784-256-10-b128        MLP 784-256-10 (ReLU), softmax cross-entropy, batch 128.
  sae-topk-d32-m192-k8-b256  TopK sparse autoencoder, d 32, m 192 latents, k 8, batch 256:
                             pre = (x - b_dec) @ W_enc + b_enc, z = relu(topk(pre)) (the k largest
                             of each row kept, the rest zero), x_hat = z @ W_dec + b_dec,
                             loss = mean over the batch of |x_hat - x|^2 summed over d; the rows
                             of W_dec are put back to unit norm after every step.

Every case warms up, then times --repeats runs of --steps steps; the figure is the median of
the runs' milliseconds per step. PyTorch runs with torch.set_num_threads(--threads); reglab runs
as `reglab bench --torch-cases --threads N`, which prints one JSON object per line,
{"case": ..., "ms_per_step": ...}. Not part of CI: install PyTorch first (`pip install torch`;
the CPU-only wheels from https://download.pytorch.org/whl/cpu are smaller), build reglab with
`cargo build --release`, then

    python3 scripts/compare-pytorch.py [--threads N] [--reglab target/release/reglab]
    python3 scripts/compare-pytorch.py --torch-only      # PyTorch's figures alone
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

MLP_CASE = "mlp-784-256-10-b128"
SAE_CASE = "sae-topk-d32-m192-k8-b256"


def time_steps(step, warmup, steps, repeats):
    """Median over `repeats` runs of `steps` calls of `step`, in ms per call."""
    for _ in range(warmup):
        step()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        runs.append((time.perf_counter() - t0) * 1e3 / steps)
    return statistics.median(runs)


def torch_mlp_step(torch):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(128, 784, generator=gen)
    y = torch.randint(0, 10, (128,), generator=gen)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    return step


def torch_sae_step(torch, d=32, m=192, k=8, batch=256):
    gen = torch.Generator().manual_seed(0)
    w_dec = torch.randn(m, d, generator=gen)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    w_dec = w_dec.requires_grad_()
    w_enc = w_dec.detach().t().clone().requires_grad_()
    b_enc = torch.zeros(m, requires_grad=True)
    b_dec = torch.zeros(d, requires_grad=True)
    opt = torch.optim.Adam([w_enc, b_enc, w_dec, b_dec], lr=1e-3)
    x = torch.randn(batch, d, generator=gen)

    def step():
        opt.zero_grad(set_to_none=True)
        pre = (x - b_dec) @ w_enc + b_enc
        values, idx = pre.topk(k, dim=-1)
        # Only the kept entries carry a gradient.
        z = torch.zeros_like(pre).scatter(-1, idx, values.relu())
        x_hat = z @ w_dec + b_dec
        loss = (x_hat - x).pow(2).sum(dim=-1).mean()
        loss.backward()
        opt.step()
        with torch.no_grad():
            w_dec.div_(w_dec.norm(dim=1, keepdim=True))

    return step


def torch_times(threads, warmup, steps, repeats):
    # torch warns at import when NumPy is absent; nothing here needs it.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    try:
        import torch
    except ImportError:
        sys.exit(
            "compare-pytorch: PyTorch is not installed; `pip install torch` "
            "(or the CPU wheels: --index-url https://download.pytorch.org/whl/cpu)"
        )
    torch.set_num_threads(threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{warmup} warm-up steps, median of {repeats} x {steps} steps",
        file=sys.stderr,
    )
    return {
        MLP_CASE: time_steps(torch_mlp_step(torch), warmup, steps, repeats),
        SAE_CASE: time_steps(torch_sae_step(torch), warmup, steps, repeats),
    }


def reglab_times(binary, threads):
    """reglab's figures, or None (with the reason printed) when they cannot be had."""
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        print(
            f"compare-pytorch: no reglab binary at {binary}; build it with "
            "`cargo build --release` or pass --reglab PATH",
            file=sys.stderr,
        )
        return None
    cmd = [binary, "bench", "--torch-cases", "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(
            f"compare-pytorch: `{' '.join(cmd)}` failed (exit {proc.returncode}); this reglab "
            "probably predates `bench --torch-cases`.",
            file=sys.stderr,
        )
        for line in detail:
            print(f"    {line}", file=sys.stderr)
        return None
    times = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            row = json.loads(line)
            times[row["case"]] = float(row["ms_per_step"])
        except (ValueError, KeyError, TypeError):
            continue
    if not times:
        print(
            f"compare-pytorch: `{' '.join(cmd)}` printed no case figures",
            file=sys.stderr,
        )
        return None
    return times


def fmt(v):
    return "-" if v is None else f"{v:.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads for both (default: all cores)",
    )
    ap.add_argument("--reglab", default="target/release/reglab", help="reglab binary")
    ap.add_argument("--steps", type=int, default=200, help="steps per timed run")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs (median taken)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    ap.add_argument("--torch-only", action="store_true", help="time PyTorch alone")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON lines too")
    args = ap.parse_args()
    if args.threads < 1 or args.steps < 1 or args.repeats < 1 or args.warmup < 0:
        ap.error("--threads, --steps and --repeats must be positive, --warmup non-negative")

    torch_ms = torch_times(args.threads, args.warmup, args.steps, args.repeats)
    reglab_ms = None if args.torch_only else reglab_times(args.reglab, args.threads)

    cases = list(torch_ms)
    cases += [c for c in (reglab_ms or {}) if c not in torch_ms]
    rows = []
    for case in cases:
        r = (reglab_ms or {}).get(case)
        t = torch_ms.get(case)
        ratio = r / t if r is not None and t else None
        rows.append((case, r, t, ratio))

    print(f"CPU, {args.threads} thread(s); ms per training step (median)")
    head = ("case", "reglab ms", "torch ms", "reglab/torch")
    width = max(len(head[0]), *(len(c) for c in cases))
    print(f"{head[0]:<{width}}  {head[1]:>10}  {head[2]:>10}  {head[3]:>12}")
    for case, r, t, ratio in rows:
        print(f"{case:<{width}}  {fmt(r):>10}  {fmt(t):>10}  {fmt(ratio):>12}")
    if args.json:
        for case, r, t, ratio in rows:
            print(
                json.dumps(
                    {
                        "case": case,
                        "threads": args.threads,
                        "reglab_ms": r,
                        "torch_ms": t,
                        "ratio": ratio,
                    }
                )
            )
    if not args.torch_only and reglab_ms is None:
        sys.exit(1)


if __name__ == "__main__":
    main()
