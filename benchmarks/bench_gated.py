"""Full BPTT of the LSTM, the GRU and the tanh RNN at one size, measured in one run.

Problem: T=100, B=32, d=16, h=64, q=16, softmax_ce, float64. Contenders: `bptt_gated.lstm_bptt`,
`bptt_gated.gru_bptt`, `bptt_core.bptt` (tanh, with biases so that every model has them). They run in
one process, one call each per round in a rotating order, 31 rounds after one warm-up round; printed are
the median time of each and the median, over rounds, of its ratio to the tanh RNN of the same round (the
speed of a shared machine drifts). For scale: per step, the LSTM does 4 gate products of h×h and the GRU
3 (one of them after the reset gate), against the tanh RNN's 1.

On a shared machine, OpenBLAS's threads fight over the cores for matrices this small; run it with
OPENBLAS_NUM_THREADS=1 for numbers that mean something (the header says which setting was used).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_gated.py
"""
import os
import statistics
import time

import numpy as np

import bptt_core as bc
import bptt_gated as bg

T, B, D, H, Q = 100, 32, 16, 64, 16
ROUNDS = 31


def main():
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(T, B, D)), rng.integers(0, Q, size=(T, B))
    lstm, gru = bg.init_lstm(D, H, Q, seed=0), bg.init_gru(D, H, Q, seed=0)
    rnn = {**bc.random_params(D, H, Q, rho=0.9, seed=0), "b_h": np.zeros(H), "b_q": np.zeros(Q)}
    ws = bc.Workspace()
    calls = {"tanh (bptt_core.bptt)": lambda: bc.bptt(rnn, xs, ys),
             "tanh (bptt_core.bptt, Workspace)": lambda: bc.bptt(rnn, xs, ys, workspace=ws),
             "LSTM (bptt_gated.lstm_bptt)": lambda: bg.lstm_bptt(lstm, xs, ys),
             "GRU (bptt_gated.gru_bptt)": lambda: bg.gru_bptt(gru, xs, ys)}
    names = list(calls)
    times = {n: [] for n in names}
    for r in range(ROUNDS + 1):
        for n in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            calls[n]()
            if r:
                times[n].append(time.perf_counter() - start)
    base = times[names[0]]
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(f"T={T}, B={B}, d={D}, h={H}, q={Q}, float64, {ROUNDS} rounds, OPENBLAS_NUM_THREADS={threads} "
          "(one process; a shared machine: noisy)")
    print(f"{'contender':36s} {'median ms':>10s} {'ratio to tanh':>14s}")
    for n in names:
        ratio = statistics.median(t / b for t, b in zip(times[n], base))
        print(f"{n:36s} {1e3 * statistics.median(times[n]):10.2f} {ratio:14.2f}")


if __name__ == "__main__":
    main()
