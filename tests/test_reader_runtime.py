"""The reader's runtime: a fresh virtual environment with only requirements.txt (as Binder installs it)
runs every chapter notebook without error.

Binder's base image brings the Jupyter machinery itself (ipykernel to run a notebook); the test adds
ipykernel and nbclient for the same reason and nothing else.
"""
import subprocess
import sys

from conftest import ROOT

RUN = """
import sys, nbformat
from nbclient import NotebookClient
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": "chapters"}}).execute()
    print("ran", path)
"""


def test_every_chapter_runs_with_only_the_reader_requirements(tmp_path):
    repo = tmp_path / "repo"                       # a clean copy of the tracked files, as Binder clones
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        (repo / f).write_bytes((ROOT / f).read_bytes())
    venv = tmp_path / "reader"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "-r", "requirements.txt", "ipykernel", "nbclient"],
                   cwd=repo, check=True, capture_output=True)
    frozen = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    installed = {line.split("==")[0].split(" @ ")[0].strip().lower() for line in frozen.splitlines()}
    assert {"numpy", "matplotlib", "ipywidgets", "bptt-book"} <= installed
    assert not installed & {"jupyter-book", "pytest", "nbval", "hypothesis", "playwright"}
    chapters = sorted(str(p.relative_to(repo)) for p in (repo / "chapters").glob("*.ipynb"))
    assert chapters
    proc = subprocess.run([str(py), "-c", RUN, *chapters], cwd=repo, capture_output=True, text=True,
                          env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
                               "MPLBACKEND": "Agg"}, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ran ") == len(chapters)
