"""JupyterLite: every chapter runs in the reader's own browser, served by the book itself.

What this extension does, and why:

- After the HTML is written, it builds a JupyterLite site (jupyterlite-core with the Pyodide kernel)
  into `<site>/lite/`: the lab app only, no source maps. Its files are every chapter notebook and the
  project's modules (the list in pyproject.toml's `only-include`), side by side in `chapters/`, so
  that `import bptt_core` works from the chapter's folder.
- The Lite copies of the chapters get one first cell that says what it is and installs ipywidgets
  (for the live sliders) from wheels the site serves; their kernelspec names Lite's Python kernel.
  The committed notebooks are not touched.
- Pyodide 0.27.7 with numpy and matplotlib, and the ipywidgets, comm and jupyterlab_widgets wheels,
  come from the cache `tools/vendor_pyodide.py` fills from npm and PyPI (sha256-checked). The
  kernel never falls back to PyPI (`disablePyPIFallback`), so nothing is fetched from another host.
  `bptt_lite_pyodide: cdn` (in _config.yml) loads Pyodide from its official CDN instead, for a
  publisher who would rather not host 35 MB.
- Every chapter page gets a "JupyterLite" entry in its launch menu, beside Binder, a relative link
  (the site may live in a sub-folder) that opens the chapter in the lab. Nothing of JupyterLite is
  loaded before the reader clicks it.
- `bptt_lite: false` (in _config.yml) builds the book without any of this.
"""
import json
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from importlib import util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LITE = "lite"                                   # folder of the Lite site in the book's output
APP = "lab"
PYODIDE_CDN = "https://cdn.jsdelivr.net/pyodide/v{version}/full/pyodide.js"
KERNEL_PLUGIN = "@jupyterlite/pyodide-kernel-extension:kernel"
KERNELSPEC = {"name": "python", "display_name": "Python (Pyodide)", "language": "python"}
ARROW_SELECTOR = ".jp-Notebook.jp-mod-commandMode:not(.jp-mod-readWrite) :focus"
ARROW_COMMANDS = [("notebook:move-cursor-down", "ArrowDown"), ("notebook:move-cursor-up", "ArrowUp"),
                  ("notebook:move-cursor-heading-above-or-collapse", "ArrowLeft"),
                  ("notebook:move-cursor-heading-below-or-expand", "ArrowRight")]
FIRST_CELL = (
    "# JupyterLite: this copy of the chapter runs in your browser, in Pyodide (Python compiled to\n"
    "# WebAssembly), with Pyodide's builds of numpy and matplotlib. This cell installs ipywidgets, for\n"
    "# the live sliders, from the book's own site, and loads matplotlib (its first import builds a font\n"
    "# cache and says so). Only the JupyterLite copy of the chapter has this cell.\n"
    "%pip install ipywidgets=={version}\n"
    "import matplotlib.pyplot")


def _joined(value):
    """nbformat's multi-line strings (lists of lines) as one string: JupyterLite reads the files as they
    are, without the rejoining a Jupyter server does, and its table of contents fails on lists."""
    return "".join(value) if isinstance(value, list) else value


def _vendor():
    spec = util.spec_from_file_location("vendor_pyodide", ROOT / "tools" / "vendor_pyodide.py")
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def modules():
    """The project's modules, as pyproject.toml's wheel target lists them (only-include)."""
    text = (ROOT / "pyproject.toml").read_text()     # read by hand: tomllib is Python 3.11+, the book 3.10+
    listed = re.search(r"^only-include\s*=\s*\[([^\]]*)\]", text, re.M)
    if not listed:
        raise RuntimeError("pyproject.toml: expected an only-include list of modules, got none")
    return [ROOT / n for n in re.findall(r'"([^"]+)"', listed.group(1)) if n.endswith(".py")]


def lite_notebook(source, ipywidgets_version):
    """The chapter as JupyterLite gets it: the install cell first, Lite's kernel named."""
    nb = json.loads(Path(source).read_text(encoding="utf-8"))
    cell = {"cell_type": "code", "execution_count": None, "id": "jupyterlite-setup",
            "metadata": {"tags": ["jupyterlite"]}, "outputs": [],
            "source": FIRST_CELL.format(version=ipywidgets_version)}
    for c in nb["cells"]:
        c["source"] = _joined(c["source"])
        if c["cell_type"] == "code":
            c["execution_count"] = None          # the stored outputs stay; a count then means "run here"
        for out in c.get("outputs", []):
            if "execution_count" in out:
                out["execution_count"] = None
            if "text" in out:
                out["text"] = _joined(out["text"])
            for mime, value in out.get("data", {}).items():
                if not mime.endswith("json"):
                    out["data"][mime] = _joined(value)
    nb["cells"] = [cell, *nb["cells"]]
    nb["metadata"]["kernelspec"] = dict(KERNELSPEC)
    nb["metadata"].get("language_info", {}).pop("version", None)
    return nb


def _model(path, rel, children=None):
    """A Jupyter contents-API model of a file or folder (what jupyter_server would list)."""
    stat = path.stat()
    when = datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    kind = "directory" if path.is_dir() else "notebook" if path.suffix == ".ipynb" else "file"
    return {"name": path.name if rel else "", "path": rel, "type": kind, "writable": True,
            "created": when, "last_modified": when, "size": None if path.is_dir() else stat.st_size,
            "mimetype": None if kind != "file" else "text/x-python" if path.suffix == ".py" else "text/plain",
            "format": "json" if children is not None else None, "content": children, "hash": None,
            "hash_algorithm": None}


def write_contents(files, api):
    """Index `files/` as JupyterLite reads it: api/contents/<folder>/all.json for every folder."""
    for folder in [files, *sorted(p for p in files.rglob("*") if p.is_dir())]:
        rel = folder.relative_to(files).as_posix()
        rel = "" if rel == "." else rel
        children = [_model(p, f"{rel}/{p.name}".lstrip("/")) for p in sorted(folder.iterdir())]
        target = api / rel / "all.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(_model(folder, rel, children), indent=1), encoding="utf-8")


def build_lite(app, out):
    """Build the Lite site into out/lite (replacing an earlier one)."""
    vendor = _vendor()
    cache = vendor.ensure()
    wheels = sorted((cache / "wheels").glob("*.whl"))
    ipywidgets = next(w.name.split("-")[1] for w in wheels if w.name.startswith("ipywidgets-"))
    work = Path(app.outdir).parent / "lite-src"
    shutil.rmtree(work, ignore_errors=True)
    chapters = work / "files" / "chapters"
    chapters.mkdir(parents=True)
    for source in sorted(Path(app.srcdir, "chapters").glob("*.ipynb")):
        notebook = lite_notebook(source, ipywidgets)
        (chapters / source.name).write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
    for module in modules():
        shutil.copy2(module, chapters / module.name)
    lite_dir = work / "lite"
    lite_dir.mkdir()
    settings = {"disablePyPIFallback": True}
    if app.config.bptt_lite_pyodide == "cdn":
        settings["pyodideUrl"] = PYODIDE_CDN.format(version=vendor.PYODIDE_VERSION)
    else:
        (lite_dir / "static").mkdir()
        (lite_dir / "static" / "pyodide").symlink_to(cache / "pyodide", target_is_directory=True)
    (lite_dir / "jupyter-lite.json").write_text(json.dumps({
        "jupyter-lite-schema-version": 0,
        "jupyter-config-data": {"appName": "BPTT book (JupyterLite)",
                                # The notebook's table of contents in this JupyterLab (4.4) fails on
                                # Run All now and then (a stale heading index; a console error).
                                "disabledExtensions": ["@jupyterlab/notebook-extension:toc"],
                                "litePluginSettings": {KERNEL_PLUGIN: settings}}}, indent=1))
    # The lab attaches every cell to the page (after the visible ones): with its default ("full") a
    # cell scrolled out of view is detached, and a live widget in it with it.
    # JupyterLab 4.4 (this JupyterLite's) binds the arrow keys in command mode to moving between cells
    # and headings even when the focus is on a widget's slider, so the slider never gets them: here
    # the bindings leave focused outputs alone.
    (lite_dir / "overrides.json").write_text(json.dumps({
        "@jupyterlab/notebook-extension:tracker": {"windowingMode": "defer"},
        "@jupyterlab/shortcuts-extension:shortcuts": {"shortcuts": [
            entry for command, key in ARROW_COMMANDS for entry in (
                {"command": command, "keys": [key], "selector": ARROW_SELECTOR, "disabled": True},
                {"command": command, "keys": [key], "selector": ARROW_SELECTOR + ":not(.jp-OutputArea-output *)"})]},
    }, indent=1))
    kernel_extension = Path(sys.prefix, "share", "jupyter", "labextensions", *KERNEL_PLUGIN.split(":")[0].split("/"))
    target = out / LITE
    shutil.rmtree(target, ignore_errors=True)
    cmd = [str(Path(sys.executable).with_name("jupyter")), "lite", "build", "--lite-dir", str(lite_dir),
           "--output-dir", str(target), "--apps", APP, "--no-sourcemaps", "--no-unused-shared-packages",
           "--ignore-sys-prefix", "--disable-addons", "contents",
           "--LiteBuildConfig.federated_extensions", str(kernel_extension),
           "--LiteBuildConfig.federated_extensions", str(next(w for w in wheels if "jupyterlab_widgets" in w.name)),
           *[arg for w in wheels for arg in ("--piplite-wheels", str(w))]]
    proc = subprocess.run(cmd, cwd=lite_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter lite build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    shutil.copytree(work / "files", target / "files", dirs_exist_ok=True)
    write_contents(target / "files", target / "api" / "contents")
    _check(target, app.config.bptt_lite_pyodide)


def _check(target, pyodide):
    """What the Lite site must hold: every chapter, the modules, the widgets extension, local wheels."""
    config = json.loads((target / "jupyter-lite.json").read_text())["jupyter-config-data"]
    names = {e["name"] for e in config.get("federated_extensions", [])}
    for needed in ("@jupyterlite/pyodide-kernel-extension", "@jupyter-widgets/jupyterlab-manager"):
        if needed not in names:
            raise RuntimeError(f"lite/jupyter-lite.json: expected the extension {needed}, got {sorted(names)}")
    kernel = config["litePluginSettings"][KERNEL_PLUGIN]
    if not kernel.get("disablePyPIFallback") or any(u.startswith("http") for u in kernel.get("pipliteUrls", [])):
        raise RuntimeError(f"lite/jupyter-lite.json: the kernel may ask PyPI for packages: {kernel}")
    if pyodide != "cdn" and not (target / "static" / "pyodide" / "pyodide.asm.wasm").is_file():
        raise RuntimeError("lite/static/pyodide: the local Pyodide is missing")


def _launch_link(app, pagename, templatename, context, doctree):
    """A JupyterLite entry in a chapter's launch menu, beside Binder."""
    if not (pagename.startswith("chapters/") and context.get("page_source_suffix") == ".ipynb"):
        return
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            root = "../" * pagename.count("/")
            group["buttons"].append({
                "type": "link", "text": "JupyterLite", "label": "jupyterlite",
                "tooltip": "Run this chapter in your browser (JupyterLite, no server)",
                "icon": "_static/images/logo_jupyterlite.svg",
                "url": f"{root}{LITE}/{APP}/index.html?path={pagename}.ipynb"})


def _finish(app, exception):
    if exception is None and app.builder.format == "html" and app.config.bptt_lite:
        build_lite(app, Path(app.outdir))


def _checked_config(app, config):
    if config.bptt_lite_pyodide not in ("local", "cdn"):
        raise ValueError(f"bptt_lite_pyodide: expected 'local' or 'cdn', got {config.bptt_lite_pyodide!r}")


def setup(app):
    app.add_config_value("bptt_lite", True, "html", types=[bool])
    app.add_config_value("bptt_lite_pyodide", "local", "html", types=[str])
    app.connect("config-inited", _checked_config)
    app.connect("html-page-context", lambda *a: _launch_link(*a) if a[0].config.bptt_lite else None,
                priority=502)
    app.connect("build-finished", _finish, priority=600)     # after bptt_site's pass over the pages
    return {"parallel_read_safe": True, "parallel_write_safe": True}
