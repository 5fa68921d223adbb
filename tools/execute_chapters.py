"""Execute chapter notebooks in place, the way their committed outputs are made.

    .venv/bin/python tools/execute_chapters.py chapters/truncation.ipynb [more.ipynb ...]
    .venv/bin/python tools/execute_chapters.py            # every chapter

Widgets are drawn as static stills (BPTT_STATIC_FRAMES=1): the committed outputs are what a reader
sees on opening a notebook before running it, and what nbval compares a fresh run against.
"""
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def execute(path):
    nb = nbformat.read(path, as_version=4)
    os.environ["BPTT_STATIC_FRAMES"] = "1"
    os.environ["BPTT_LIVE_WIDGETS"] = "0"
    os.environ.pop("BPTT_FRAMES_DIR", None)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nb.metadata["kernelspec"] = KERNELSPEC
    for cell in nb.cells:                      # timestamps would make every run a diff
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


if __name__ == "__main__":
    paths = [Path(p).resolve() for p in sys.argv[1:]] or sorted((ROOT / "chapters").glob("*.ipynb"))
    for p in paths:
        print(f"{p.relative_to(ROOT)}: {execute(p):.1f} s", flush=True)
