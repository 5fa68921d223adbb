"""Full BPTT against its matrix-multiplication floor, measured in one run.

Problem: tanh, softmax_ce, T=256, B=32, d=32, h=128, q=32, float64. The floor is the same matrix
products that `bptt` performs (input and output projections, 2·T recurrence products, the three
weight-gradient products), timed alone on arrays of the same shapes, each written into an existing
array. `bare_numpy` is the same mathematics with no checks: the least numpy can do per step.
`bptt_core.bptt` runs twice: as a plain call, and with a `Workspace` that keeps its work arrays from
one call to the next, as `train` does.

The contenders run in one process, one call each per round in a rotating order, 41 rounds (the
steady state of a training loop); each ratio compares calls of the same round, since the speed of
this machine drifts by tens of per cent from one process to the next. Five fresh processes are pooled.
All of it is done twice: under glibc's default allocator policy, and with glibc told to keep freed memory
(MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_). Under the default policy, the 8 MB arrays that a
call allocates afresh are handed back to the system when freed and page-faulted in again by the next
call; minor page faults per call are printed.

    python benchmarks/bench_speed.py [--processes N]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import bptt_core as bc

T, B, D, H, Q = 256, 32, 32, 128, 32


def matmul_floor(p, xs, hs, dL_do, delta, out):
    """Exactly the products of one `bptt` call, on arrays of the same shapes, into `out` arrays."""
    x2, h2, o2, d2 = xs.reshape(-1, D), hs.reshape(-1, H), dL_do.reshape(-1, Q), delta.reshape(-1, H)
    np.matmul(x2, p["W_hx"].T, out=out["TBh"])           # input projection, all t at once
    for t in range(T):
        np.matmul(hs[t], p["W_hh"].T, out=out["Bh"])     # recurrence, forward
    np.matmul(h2[B:], p["W_qh"].T, out=out["TBq"])       # output projection
    np.matmul(o2, p["W_qh"], out=out["TBh"])             # W_qhᵀ ∂L/∂o_t, all t at once
    for t in range(T - 1):
        np.matmul(delta[t], p["W_hh"], out=out["Bh"])    # recurrence, backward
    d2.T @ x2                                            # dL/dW_hx
    d2.T @ h2[:-B]                                       # dL/dW_hh
    o2.T @ h2[B:]                                        # dL/dW_qh


def bare_numpy(p, xs, ys):
    """The same mathematics with no checks and no generality: the least numpy can do per step
    (one matmul, one add and one tanh forward; one multiply, one matmul and one add backward)."""
    W_hx, W_hh, W_qh = p["W_hx"], p["W_hh"], p["W_qh"]
    hs = np.empty((T + 1, B, H))
    hs[0] = 0.0
    np.matmul(xs.reshape(-1, D), W_hx.T, out=hs[1:].reshape(-1, H))
    step = np.empty((B, H))
    for t in range(1, T + 1):
        hs[t] += np.matmul(hs[t - 1], W_hh.T, out=step)
        np.tanh(hs[t], out=hs[t])
    z = (hs[1:].reshape(-1, H) @ W_qh.T).reshape(T, B, Q)
    z -= z.max()
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    z.reshape(-1, Q)[np.arange(T * B), ys.ravel()] -= 1.0
    z /= T * B
    g = (z.reshape(-1, Q) @ W_qh).reshape(T, B, H)
    delta = 1.0 - hs[1:] ** 2
    for t in range(T - 1, -1, -1):
        np.multiply(g[t], delta[t], out=delta[t])
        if t:
            g[t - 1] += np.matmul(delta[t], W_hh, out=step)
    d2 = delta.reshape(-1, H)
    return d2.T @ xs.reshape(-1, D), d2.T @ hs[:-1].reshape(-1, H), z.reshape(-1, Q).T @ hs[1:].reshape(-1, H)


def contenders():
    rng = np.random.default_rng(0)
    p = bc.random_params(D, H, Q, rho=0.9, seed=0)
    xs, ys = rng.normal(size=(T, B, D)), rng.integers(0, Q, size=(T, B))
    hs, dL_do, delta = rng.normal(size=(T + 1, B, H)), rng.normal(size=(T, B, Q)), rng.normal(size=(T, B, H))
    out = {"TBh": np.empty((T * B, H)), "Bh": np.empty((B, H)), "TBq": np.empty((T * B, Q))}
    ws = bc.Workspace()
    ref, bare = bc.bptt(p, xs, ys).grads, bare_numpy(p, xs, ys)
    assert all(np.allclose(ref[k], g, rtol=1e-9, atol=1e-15) for k, g in zip(bc.PARAM_NAMES, bare))
    assert all(np.array_equal(ref[k], g) for k, g in bc.bptt(p, xs, ys, workspace=ws).grads.items())
    return {"floor": lambda: matmul_floor(p, xs, hs, dL_do, delta, out), "bare": lambda: bare_numpy(p, xs, ys),
            "bptt": lambda: bc.bptt(p, xs, ys), "bptt_ws": lambda: bc.bptt(p, xs, ys, workspace=ws)}


def measure_together(rounds):
    """All contenders in this process, one call each per round in a rotating order, so that each round's
    ratios compare calls made under the same conditions. Prints, per contender, the seconds and minor
    page faults of every call (JSON)."""
    fns = contenders()
    names = list(fns)
    for _ in range(3):
        for fn in fns.values():
            fn()
    out = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            fns[name]()
            out[name].append((time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))
    print(json.dumps(out))


LABELS = {"floor": "matmul floor (same products)", "bare": "bare numpy BPTT (no checks)", "bptt": "bptt_core.bptt",
          "bptt_ws": "bptt_core.bptt, Workspace"}
POLICIES = {"glibc default": {}, "glibc keeps freed memory": {"MALLOC_TRIM_THRESHOLD_": "1000000000",
                                                              "MALLOC_MMAP_THRESHOLD_": "1000000000"}}


def main(processes, rounds=41):
    """For each allocator policy, `processes` fresh processes of `rounds` interleaved rounds each."""
    print(f"full BPTT, tanh + softmax_ce, T={T} B={B} d={D} h={H} q={Q}, float64; {processes} processes x "
          f"{rounds} rounds, one call of each contender per round; medians over all rounds")
    ratios = {}
    for policy, env in POLICIES.items():
        calls = {name: [] for name in LABELS}
        for _ in range(processes):
            out = subprocess.run([sys.executable, __file__, "--together", str(rounds)], env={**os.environ, **env},
                                 check=True, capture_output=True, text=True).stdout
            for name, runs in json.loads(out).items():
                calls[name] += runs
        floor = [s for s, _ in calls["floor"]]
        print(f"  allocator: {policy}")
        print(f"    {'':30s} {'median':>9s} {'/ floor':>8s} {'page faults/call':>17s}")
        for name, label in LABELS.items():
            secs = [s for s, _ in calls[name]]
            ratio = statistics.median(s / f for s, f in zip(secs, floor))
            faults = statistics.median(f for _, f in calls[name])
            print(f"    {label:30s} {statistics.median(secs) * 1e3:6.2f} ms {ratio:8.2f} {faults:17.0f}")
            ratios[policy, name] = ratio
    print("  issue target: bptt / floor <= 1.3")
    return ratios


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--together", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.together:
        measure_together(args.together)
    else:
        main(args.processes)
