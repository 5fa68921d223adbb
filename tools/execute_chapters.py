"""Execute chapter notebooks in place, the way their committed outputs are made.

    .venv/bin/python tools/execute_chapters.py chapters/truncation.ipynb [more.ipynb ...]
    .venv/bin/python tools/execute_chapters.py            # every chapter

Widgets are drawn as stills (BPTT_STATIC_FRAMES=1, bptt_viz's STILL mode: the start frame as an
image/png output and one line saying to run the cell for the live control). The committed outputs are
what a reader sees on opening a notebook before running it, and what nbval compares a fresh run against.
The metadata is written as a Binder reader's JupyterLab would write it, so that opening a chapter there
does not mark it modified: the kernelspec's display name, and language_info with the Python version of
Binder's kernel (JupyterLab rewrites language_info from the kernel it starts; any difference, even in
the patch version, makes the notebook "modified" on opening).
"""
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
# binder/runtime.txt asks for python-3.11; repo2docker's environment lock for 3.11
# (repo2docker/buildpacks/conda/environment.py-3.11-linux-64.lock) installs this release.
BINDER_PYTHON = "3.11.14"
LANGUAGE_INFO = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                 "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                 "pygments_lexer": "ipython3", "version": BINDER_PYTHON}


def execute(path):
    nb = nbformat.read(path, as_version=4)
    os.environ["BPTT_STATIC_FRAMES"] = "1"         # bptt_viz's STILL mode (see bptt_viz.mode)
    os.environ.pop("BPTT_FRAMES_DIR", None)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = LANGUAGE_INFO
    for cell in nb.cells:                      # timestamps would make every run a diff
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


if __name__ == "__main__":
    paths = [Path(p).resolve() for p in sys.argv[1:]] or sorted((ROOT / "chapters").glob("*.ipynb"))
    for p in paths:
        print(f"{p.relative_to(ROOT)}: {execute(p):.1f} s", flush=True)
