"""Full BPTT against its matrix-multiplication floor, measured in one run.

Problem: tanh, softmax_ce, T=256, B=32, d=32, h=128, q=32, float64. The floor is the same matrix
products that `bptt` performs (input and output projections, 2·T recurrence products, the three
weight-gradient products), timed alone on arrays of the same shapes. A third contender, `bare_numpy`,
is the same mathematics with no checks: the least numpy can do per step.

Each contender runs alone in a fresh process, 41 calls back to back (the steady state of a training
loop); processes alternate between contenders, and ratios are taken round by round. All of it is done
twice: under glibc's default allocator policy, and with glibc told to keep freed memory
(MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_). Under the default policy, the 8 MB arrays that a
`bptt` call allocates are handed back to the system when freed and page-faulted in again by the next
call, which the floor's short-lived temporaries escape; minor page faults per call are printed.

    python benchmarks/bench_speed.py [--rounds N]
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import bptt_core as bc

T, B, D, H, Q = 256, 32, 32, 128, 32


def matmul_floor(p, xs, hs, dL_do, delta):
    """Exactly the products of one `bptt` call, on arrays of the same shapes."""
    xs @ p["W_hx"].T                                     # input projection, all t at once
    for t in range(T):
        hs[t] @ p["W_hh"].T                              # recurrence, forward
    hs[1:] @ p["W_qh"].T                                 # output projection
    dL_do @ p["W_qh"]                                    # W_qhᵀ ∂L/∂o_t, all t at once
    for t in range(T - 1):
        delta[t] @ p["W_hh"]                             # recurrence, backward
    d2 = delta.reshape(-1, H)
    d2.T @ xs.reshape(-1, D)                             # dL/dW_hx
    d2.T @ hs[:-1].reshape(-1, H)                        # dL/dW_hh
    dL_do.reshape(-1, Q).T @ hs[1:].reshape(-1, H)       # dL/dW_qh


def bare_numpy(p, xs, ys):
    """The same mathematics with no checks and no generality: the least numpy can do per step
    (one matmul, one add and one tanh forward; one multiply, one matmul and one add backward)."""
    W_hx, W_hh, W_qh = p["W_hx"], p["W_hh"], p["W_qh"]
    hs = np.empty((T + 1, B, H))
    hs[0] = 0.0
    np.matmul(xs, W_hx.T, out=hs[1:])
    step = np.empty((B, H))
    for t in range(1, T + 1):
        hs[t] += np.matmul(hs[t - 1], W_hh.T, out=step)
        np.tanh(hs[t], out=hs[t])
    z = hs[1:] @ W_qh.T
    z -= z.max()
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    z.reshape(-1, Q)[np.arange(T * B), ys.ravel()] -= 1.0
    z /= T * B
    g = z @ W_qh
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
    ref, bare = bc.bptt(p, xs, ys).grads, bare_numpy(p, xs, ys)
    assert all(np.allclose(ref[k], g, rtol=1e-9, atol=1e-15) for k, g in zip(bc.PARAM_NAMES, bare))
    return {"floor": lambda: matmul_floor(p, xs, hs, dL_do, delta), "bare": lambda: bare_numpy(p, xs, ys),
            "bptt": lambda: bc.bptt(p, xs, ys)}


def measure_alone(name, calls=41):
    """One contender, called back to back as in a training loop; prints median seconds and faults/call."""
    fn = contenders()[name]
    for _ in range(3):
        fn()
    times, start_faults = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    print(statistics.median(times), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start_faults) / calls)


LABELS = {"floor": "matmul floor (same products)", "bare": "bare numpy BPTT (no checks)", "bptt": "bptt_core.bptt"}
POLICIES = {"glibc default": {}, "glibc keeps freed memory": {"MALLOC_TRIM_THRESHOLD_": "1000000000",
                                                              "MALLOC_MMAP_THRESHOLD_": "1000000000"}}


def main(rounds):
    """Every (policy, contender) in a fresh process, the contenders alternating, `rounds` times over."""
    print(f"full BPTT, tanh + softmax_ce, T={T} B={B} d={D} h={H} q={Q}, float64; each figure: median over "
          f"{rounds} fresh processes of the median of 41 back-to-back calls")
    ratios = {}
    for policy, env in POLICIES.items():
        results = {name: [] for name in LABELS}
        for _ in range(rounds):
            for name in LABELS:
                out = subprocess.run([sys.executable, __file__, "--alone", name], env={**os.environ, **env},
                                     check=True, capture_output=True, text=True).stdout.split()
                results[name].append((float(out[0]), float(out[1])))
        floor = [s for s, _ in results["floor"]]
        print(f"  allocator: {policy}")
        print(f"    {'':30s} {'median':>9s} {'/ floor':>8s} {'page faults/call':>17s}")
        for name, label in LABELS.items():
            secs = [s for s, _ in results[name]]
            ratio = statistics.median(s / f for s, f in zip(secs, floor))
            faults = statistics.median(f for _, f in results[name])
            print(f"    {label:30s} {statistics.median(secs) * 1e3:6.2f} ms {ratio:8.2f} {faults:17.0f}")
            ratios[policy, name] = ratio
    print("  issue target: bptt / floor <= 1.3")
    return ratios


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--alone", choices=LABELS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.alone:
        measure_alone(args.alone)
    else:
        main(args.rounds)
