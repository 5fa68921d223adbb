"""The live notebook as a Binder reader meets it, timed in the browser.

For every chapter: open it in JupyterLab (a fresh workspace), time Run All (from the command to the
last cell's result), then move every slider of every live widget with the keyboard, one step at a
time across its whole range and back, and time each step from the key press to the loaded new image
(measured inside the page: keydown event -> `load` event of the widget's <img> with its new source).
Targets: Run All <= 20 s per chapter, median step <= 150 ms per control.

The environment is the Binder reader's (tests/binder_lab.py: Python 3.11, JupyterLab 4, exactly
binder/requirements.txt, Debian's chromium). Times on a shared machine are noisy; rerun to compare.

    .venv/bin/python benchmarks/bench_live.py [chapter.ipynb ...]
"""
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import binder_lab as bl  # noqa: E402

RUN_ALL_TARGET, STEP_TARGET = 20.0, 150.0


def walk(reader, box, slider):
    """Step a slider to its end and back to where it started; the milliseconds of every step."""
    position, last = reader.slider_state(box, slider)
    keys = ["ArrowRight"] * int(last - position) + ["ArrowLeft"] * int(last)
    keys += ["ArrowRight"] * int(position)
    times = []
    for key in keys[:24]:                             # at most 24 steps per control
        ms = reader.press(box, slider, key)
        times.append(float("inf") if ms is None else ms)
    return times


def main(chapters):
    from playwright.sync_api import sync_playwright

    venv = bl.binder_venv()
    rows, run_all = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "repo").mkdir()
        (tmp / "home").mkdir()
        lab = bl.JupyterLab(venv, bl.reader_copy(tmp / "repo", venv), tmp / "home")
        try:
            with sync_playwright() as p:
                reader = bl.Reader(p, lab, tmp / "shots")
                reader.open(chapters[0], "warm-up")  # the kernel's first imports (matplotlib's font cache)
                for chapter in chapters:
                    reader.open(chapter, f"bench-{chapter.removesuffix('.ipynb')}")
                    run_all[chapter] = reader.run_all()
                    for b in range(reader.boxes().count()):
                        reader.boxes().nth(b).scroll_into_view_if_needed()
                        for s in range(reader.sliders(b)):
                            slider = reader.boxes().nth(b).locator(".widget-slider").nth(s)
                            label = slider.locator(".widget-label").first.text_content().strip()
                            rows.append((chapter, b, label, walk(reader, b, s)))
                reader.close()
        finally:
            lab.stop()

    print("Run All in JupyterLab (Binder reader's environment), seconds")
    for chapter, sec in run_all.items():
        print(f"  {chapter:24s} {sec:6.1f}   {'ok' if sec <= RUN_ALL_TARGET else 'OVER the 20 s target'}")
    print("\nKey press -> new image, milliseconds (each control stepped across its range and back)")
    print(f"  {'chapter':24s} {'widget':>6s} {'control':>10s} {'steps':>5s} {'median':>7s} {'90th pct':>8s} {'max':>7s}")
    for chapter, b, label, times in rows:
        finite = [t for t in times if t != float("inf")]
        p90 = statistics.quantiles(times, n=10)[-1] if len(times) >= 2 else times[0]
        verdict = "ok" if statistics.median(times) <= STEP_TARGET else "OVER the 150 ms target"
        print(f"  {chapter:24s} {b:6d} {label:>10s} {len(times):5d} {statistics.median(times):7.0f} {p90:8.0f} "
              f"{max(finite) if finite else float('inf'):7.0f}   {verdict}"
              + ("" if len(finite) == len(times) else f" ({len(times) - len(finite)} steps without a new image)"))


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.name for p in (bl.ROOT / "chapters").glob("*.ipynb"))
    start = time.monotonic()
    main(names)
    print(f"\n(total {time.monotonic() - start:.0f} s)")
