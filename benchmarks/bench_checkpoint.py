"""Checkpointed BPTT against plain full BPTT: peak memory and time, measured in one run.

Problem: tanh, softmax_ce, T=1000, B=32, d=32, h=128, q=32, float64 (Gruslys et al. 2016 report 95% of
memory saved at T = 1000 for about a third more time). `bptt_checkpointed` keeps every c-th state and
recomputes the rest in the backward pass; it is run with c = √T / 2 (its default) and two other c.

Memory: the peak that tracemalloc traces during one call without a workspace (the inputs are made
before tracing starts, so the figures are what the call itself allocates); plain `bptt` with
``keep_dL_dh=False``, as a training loop calls it.
Time: each contender with its own `Workspace` (the steady state of a training loop), one call each per
round in a rotating order, after one warm-up round; each ratio compares calls of the same round (this
machine's speed drifts from one process to the next) and the median of these ratios is printed,
beside each contender's median and fastest time.

    python benchmarks/bench_checkpoint.py [--rounds N]
"""
import argparse
import statistics
import time

import numpy as np

import bptt_core as bc
from bench_memory import peak_mib                 # this folder is on sys.path when run as a script

T, B, D, H, Q = 1000, 32, 32, 128, 32


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    p = bc.random_params(D, H, Q, rho=0.9, seed=0)
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(T, B, D)), rng.integers(0, Q, size=(T, B))
    every = [None, 32, 64]
    name = {c: f"checkpointed, c = {c if c else round(np.sqrt(T) / 2)}" for c in every}

    ref, worst = bc.bptt(p, xs, ys, keep_dL_dh=False), 0.0
    for c in every:                                   # the same gradient, to rounding
        got = bc.bptt_checkpointed(p, xs, ys, every=c)
        err = max(np.abs(got.grads[k] - ref.grads[k]).max() / np.abs(ref.grads[k]).max() for k in ref.grads)
        assert err < 1e-12 and abs(got.loss - ref.loss) < 1e-12 * ref.loss, (c, err)
        worst = max(worst, err)

    memory = {"plain bptt": peak_mib(lambda: bc.bptt(p, xs, ys, keep_dL_dh=False))}
    for c in every:
        memory[name[c]] = peak_mib(lambda: bc.bptt_checkpointed(p, xs, ys, every=c))

    calls = {"plain bptt": (lambda ws: bc.bptt(p, xs, ys, keep_dL_dh=False, workspace=ws))}
    for c in every:
        calls[name[c]] = (lambda ws, c=c: bc.bptt_checkpointed(p, xs, ys, every=c, workspace=ws))
    spaces = {k: bc.Workspace() for k in calls}
    times = {k: [] for k in calls}
    order = list(calls)
    for r in range(rounds + 1):
        for k in order[r % len(order):] + order[:r % len(order)]:
            start = time.perf_counter()
            calls[k](spaces[k])
            if r:                                     # round 0 warms up (workspaces, caches)
                times[k].append(time.perf_counter() - start)

    base = memory["plain bptt"]
    print(f"T={T} B={B} d={D} h={H} q={Q}, tanh, softmax_ce; {rounds} rounds")
    print(f"  gradients: largest entry-wise difference from plain bptt, relative to each matrix's largest entry:"
          f" {worst:.1e}")
    print(f"  {'':28s} {'peak MiB':>9s} {'saved':>7s} {'median ms':>10s} {'fastest ms':>11s} {'time / plain':>13s}")
    for k in calls:
        ratio = statistics.median(a / b for a, b in zip(times[k], times["plain bptt"]))
        print(f"  {k:28s} {memory[k]:9.2f} {1 - memory[k] / base:7.1%} {1e3 * statistics.median(times[k]):10.1f}"
              f" {1e3 * min(times[k]):11.1f} {ratio:13.2f}")


if __name__ == "__main__":
    main()
