"""Peak traced memory of full BPTT, Subsequence(k) and checkpointed BPTT as T grows (tracemalloc, one run).

Full BPTT must keep the whole forward pass (T+1 hidden states) for its backward pass; Subsequence(k)
runs forward and backward one chunk of k steps at a time, so with ``keep_dL_dh=False`` its peak does not
depend on T (keeping dL/dh_t for every t, of course, does). `bptt_checkpointed` computes the exact full
gradient from every c-th state (c = √T / 2), so its peak grows like √T. Problem: tanh, softmax_ce, B=8, d=16, h=64, q=16, k=32, float64. Inputs are made before
tracing starts, so the figures are what `bptt` itself allocates.

    python benchmarks/bench_memory.py
"""
import tracemalloc

import numpy as np

import bptt_core as bc

B, D, H, Q, K = 8, 16, 64, 16, 32


def peak_mib(fn):
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20


def main():
    p = bc.random_params(D, H, Q, seed=0)
    rng = np.random.default_rng(0)
    rows = []
    for T in (512, 8192):
        xs, ys = rng.normal(size=(T, B, D)), rng.integers(0, Q, size=(T, B))
        rows.append((T, peak_mib(lambda: bc.bptt(p, xs, ys, keep_dL_dh=False)),
                     peak_mib(lambda: bc.bptt(p, xs, ys, truncation=bc.Subsequence(K), keep_dL_dh=False)),
                     peak_mib(lambda: bc.bptt(p, xs, ys, truncation=bc.Subsequence(K))),
                     peak_mib(lambda: bc.bptt_checkpointed(p, xs, ys))))
    print(f"peak traced memory (MiB), B={B} d={D} h={H} q={Q}, Subsequence k={K}")
    print(f"  {'T':>6s} {'full':>10s} {'subsequence':>12s} {'subsequence, dL_dh kept':>24s} {'checkpointed':>13s}")
    for T, full, sub, sub_kept, ck in rows:
        print(f"  {T:6d} {full:10.2f} {sub:12.3f} {sub_kept:24.2f} {ck:13.3f}")
    (T1, f1, s1, _, c1), (T2, f2, s2, _, c2) = rows
    print(f"  growth from T={T1} to T={T2} ({T2 // T1}x): full {f2 / f1:.1f}x, subsequence {s2 / s1:.2f}x,"
          f" checkpointed {c2 / c1:.2f}x")


if __name__ == "__main__":
    main()
