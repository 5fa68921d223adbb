"""The Binder reader's setup, shared by tests/test_binder_reader.py and benchmarks/bench_live.py.

- `binder_venv()`: a Python 3.11 virtual environment with what Binder's base image brings (JupyterLab 4,
  Notebook 7, ipywidgets 8) plus `binder/requirements.txt`, cached under ~/.cache/bptt-book/ and keyed
  on the requirement files, so only the first run downloads anything.
- `reader_copy(dest)`: the repository's files as Binder clones them, installed into that venv with
  Binder's own command (`pip install -r binder/requirements.txt`, run from the repository root).
- `JupyterLab(...)`: a JupyterLab server on 127.0.0.1 over that copy (no token, a fresh workspace), and
  `Reader`: Chromium (Debian's, driven by playwright) with the steps a reader takes: open a chapter,
  Run All, move a slider with the keyboard and wait for the new image.
"""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What repo2docker's base environment brings (repo2docker/buildpacks/conda/environment.yml).
BINDER_BASE = ["jupyterlab==4.*", "notebook==7.*", "ipywidgets==8.*", "jupyter_server==2.*"]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bptt-book"
CHROMIUM = os.environ.get("BPTT_CHROMIUM", "/usr/bin/chromium")
WIDGET_CALLS = ("bv.sweep(", "bv.spectral_widget(")


def _python311():
    found = shutil.which("python3.11")
    if found:
        return found
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    raise RuntimeError("the Binder reader needs python3.11 (binder/runtime.txt), none found on PATH")


def binder_venv():
    """The cached venv (created on first use): Binder's base packages and the reader requirements."""
    reqs = [ROOT / "requirements.txt", ROOT / "binder" / "requirements.txt", ROOT / "binder" / "runtime.txt"]
    key = hashlib.sha256(json.dumps(BINDER_BASE).encode() + b"".join(p.read_bytes() for p in reqs))
    venv = CACHE / f"binder-venv-{key.hexdigest()[:16]}"
    if (venv / ".complete").exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([_python311(), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + BINDER_BASE, check=True)
    # the third-party lines of requirements.txt now; this project itself per copy (reader_copy)
    third_party = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    subprocess.run(pip + [line for line in third_party if line and not line.startswith("-")], check=True)
    (venv / ".complete").write_text("")
    return venv


def reader_copy(dest, venv):
    """Copy the tracked (and new, unignored) files to `dest` and install them as Binder does."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            (dest / f).write_bytes((ROOT / f).read_bytes())
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", "binder/requirements.txt"], cwd=dest, check=True)
    # The chapters store language_info as Binder's kernel reports it (Python 3.11.14, see
    # tools/execute_chapters.py); this venv's 3.11 may be another patch release. Give the copies this
    # kernel's version, so that the "opening does not mark it modified" check tests everything else.
    here = subprocess.run([str(venv / "bin" / "python"), "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for nb_path in (dest / "chapters").glob("*.ipynb"):
        nb = json.loads(nb_path.read_text())
        if "language_info" in nb["metadata"]:
            nb["metadata"]["language_info"]["version"] = here
        nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return dest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """`jupyter lab` on 127.0.0.1 over `root`, as Binder starts it, with a fresh home and workspace."""

    def __init__(self, venv, root, home):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BPTT_", "JPY_", "JUPYTER"))}
        env.pop("MPLBACKEND", None)
        news = home / ".jupyter/lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
        news.parent.mkdir(parents=True, exist_ok=True)
        news.write_text('{"fetchNews": "false"}')     # no "get notified about news?" box over the page
        env.update(HOME=str(home), PATH=f"{venv / 'bin'}:/usr/bin:/bin")
        self.log = open(home / "jupyterlab.log", "w")
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
             f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={home / 'workspaces'}",
             "--LabApp.expose_app_in_browser=True", *(["--allow-root"] if os.geteuid() == 0 else [])],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/api/status", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"JupyterLab did not start; see {home / 'jupyterlab.log'}")
                time.sleep(0.5)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# JavaScript run in the page (window.jupyterapp exists because of --LabApp.expose_app_in_browser).
JS_STATE = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  return {
    path: panel.context.path,
    dirty: panel.context.model.dirty,
    kernel: panel.sessionContext.session && panel.sessionContext.session.kernel
            ? panel.sessionContext.session.kernel.status : null,
    ready: panel.context.isReady,
    executed: cells.filter(c => c.model.executionCount !== null).length,
    code_cells: cells.length,
    busy: cells.filter(c => (c.promptNode && c.promptNode.textContent.includes('*'))).length,
  };
}"""

JS_OUTPUTS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  return panel.content.widgets.filter(c => c.model.type === 'code').map(c => ({
    source: c.model.sharedModel.getSource(),
    outputs: c.model.outputs.toJSON().map(o => ({type: o.output_type, name: o.name || null,
                                                  text: o.text ? String(o.text).slice(0, 2000) : null,
                                                  ename: o.ename || null, evalue: o.evalue || null,
                                                  mimes: Object.keys(o.data || {})})),
    live: c.node.querySelectorAll('.bptt-live').length,
  }));
}"""

# Press a key on a slider handle and time it until the box's image has loaded its new source.
JS_PRESS_SETUP = """([boxIndex]) => {
  const box = document.querySelectorAll('.jp-Notebook .bptt-live')[boxIndex];
  const img = box.querySelector('img');
  window.__bptt = {start: null, end: null, before: img.src};
  img.addEventListener('load', () => {
    if (window.__bptt.end === null && img.src !== window.__bptt.before) window.__bptt.end = performance.now();
  }, {once: false});
  document.addEventListener('keydown', () => {
    if (window.__bptt.start === null) window.__bptt.start = performance.now();
  }, {capture: true, once: true});
  return img.src;
}"""

JS_IMAGE_BYTES = """async ([boxIndex]) => {
  const img = document.querySelectorAll('.jp-Notebook .bptt-live')[boxIndex].querySelector('img');
  const blob = await (await fetch(img.src)).blob();
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let s = ''; for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}"""


class LabPage:
    """What a reader does with a JupyterLab page, here and in the site's JupyterLite
    (tests/test_lite.py): read its state with `js_state` and wait until a predicate on it holds."""

    js_state = JS_STATE

    def state(self):
        return self.page.evaluate(self.js_state)

    def wait(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.state()
            if st is not None and predicate(st):
                return st
            time.sleep(0.25)
        raise AssertionError(f"timed out ({timeout} s) waiting for {what}; last state {self.state()}")


class Reader(LabPage):
    """A reader in Chromium: one page, one JupyterLab."""

    def __init__(self, playwright, lab, artifacts):
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM)
        self.page = self.browser.new_page(viewport={"width": 1280, "height": 1000})
        self.lab, self.artifacts = lab, artifacts
        self.console_errors = []
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))

    def close(self):
        self.browser.close()


    def open(self, chapter, workspace):
        """Open chapters/<chapter> in a fresh workspace; wait until its kernel is idle."""
        self.page.goto(f"{self.lab.url}/lab/workspaces/{workspace}/tree/chapters/{chapter}?reset")
        return self.wait(lambda s: s["path"] == f"chapters/{chapter}" and s["ready"] and s["kernel"] == "idle",
                         120, f"{chapter} to open with an idle kernel")

    def command(self, name, args=None):
        return self.page.evaluate("([n, a]) => window.jupyterapp.commands.execute(n, a || {})", [name, args])

    def run_all(self, timeout=300):
        """Run All from the Run menu's command; returns the seconds until every cell has run."""
        start = time.monotonic()
        self.command("notebook:run-all-cells")
        self.wait(lambda s: s["executed"] == s["code_cells"] and s["busy"] == 0 and s["kernel"] == "idle",
                  timeout, "Run All to finish")
        return time.monotonic() - start

    def outputs(self):
        return self.page.evaluate(JS_OUTPUTS)

    def boxes(self):
        return self.page.locator(".jp-Notebook .bptt-live")

    def image_b64(self, box_index):
        return self.page.evaluate(JS_IMAGE_BYTES, [box_index])

    def press(self, box_index, slider_index, key, timeout=10.0):
        """Press `key` on a slider of a live widget; return the milliseconds from the key press to the
        loaded new image (None if the image did not change within `timeout`)."""
        box = self.boxes().nth(box_index)
        handle = box.locator(".widget-slider .noUi-handle, .widget-slider input").nth(slider_index)
        handle.focus()
        self.page.evaluate(JS_PRESS_SETUP, [box_index])
        self.page.keyboard.press(key)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.page.evaluate("() => window.__bptt")
            if t["end"] is not None and t["start"] is not None:
                return t["end"] - t["start"]
            time.sleep(0.01)
        return None

    def slider_state(self, box_index, slider_index):
        """(position, last position) of a slider (ipywidgets' noUiSlider handle: aria-valuenow/max)."""
        handle = self.boxes().nth(box_index).locator(".widget-slider .noUi-handle").nth(slider_index)
        return float(handle.get_attribute("aria-valuenow")), float(handle.get_attribute("aria-valuemax"))

    def sliders(self, box_index):
        return self.boxes().nth(box_index).locator(".widget-slider .noUi-handle").count()

    def screenshot(self, name, locator=None):
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        (locator or self.page).screenshot(path=str(path))
        return path
