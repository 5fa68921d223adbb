"""How long one update of the spectral-radius widget takes (chapter "Eigenvalue analysis").

One update is what a reader's slider move costs in a live session: `SpectralView.update` (recompute
‖dℓ/dh_t‖ with bptt_core, set the data of the changing artists, draw them over the cached background)
plus `png()` (encode the frame that the Image widget shows). The target is a median of at most 50 ms at
T = 200, h = 64. For comparison, the same figure rebuilt from scratch on every move (a new view, the
first draw, the PNG) is timed in the same run; the ratio is what updating data instead saves.
Times are medians over a sweep of ρ across both activations and both kinds of W_hh.

    python benchmarks/bench_widget.py
"""
import statistics
import time

import matplotlib

matplotlib.use("Agg")

import bptt_viz as bv  # noqa: E402

RHOS = [0.5 + 0.05 * i for i in range(21)]
SETTINGS = [(rho, act, kind) for rho in RHOS for act in ("identity", "tanh") for kind in ("normal", "non-normal")]


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def update_times(view, T):
    view.update(T=T)                                   # first draw for this T fills the background cache
    return [timed(lambda: (view.update(rho=r, T=T, activation=a, kind=k), view.png()))
            for r, a, k in SETTINGS]


def rebuild_times(T, n=12):
    def once(r, a, k):
        view = bv.SpectralView()
        view.update(rho=r, T=T, activation=a, kind=k)
        view.png()
    return [timed(lambda: once(*s)) for s in SETTINGS[:n]]


def main():
    view = bv.SpectralView(h=64)
    print("spectral-radius widget, h = 64, one update = recompute + redraw + PNG (median over "
          f"{len(SETTINGS)} settings)")
    rows = {}
    for T in (200, 1000):
        upd, reb = update_times(view, T), rebuild_times(T)
        rows[T] = (statistics.median(upd), statistics.quantiles(upd, n=10)[-1], statistics.median(reb))
        print(f"  T = {T:4d}: update {rows[T][0] * 1e3:6.1f} ms (90th percentile {rows[T][1] * 1e3:5.1f} ms); "
              f"rebuilding the figure {rows[T][2] * 1e3:6.1f} ms; rebuild / update = {rows[T][2] / rows[T][0]:4.1f}")
    print(f"  target: median update at T = 200 within 50 ms: {'met' if rows[200][0] <= 0.050 else 'NOT met'}")


if __name__ == "__main__":
    main()
