"""JupyterLite, as a reader meets it: the built site served on 127.0.0.1, a real headless Chromium, and
every chapter run in the browser (Pyodide) from the site's own files.

Every host but 127.0.0.1 is unreachable: Chromium resolves no other name (--host-resolver-rules), and
every request to another host is recorded and must not happen. (Not refused by request routing: that
turns the browser's cache off, and a second launch must come from the cache.) The test needs the lab's
app object in the page (JupyterLab's `exposeAppInBrowser`), which the test's server sets in the lab's
configuration as it sends it; the site itself does not expose it.
Screenshots go to test-artifacts/lite/.
"""
import functools
import http.server
import json
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

import binder_lab as bl
from conftest import ROOT, bytes_received

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
SHOTS = ROOT / "test-artifacts" / "lite"
CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))
HOST = "127.0.0.1"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {HOST}"]
SECONDS = {}                                    # chapter -> (open, Run All), printed at the end

JS_STATE = """() => {
  const app = window.jupyterapp, panel = app && app.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const session = panel.sessionContext.session, cells = panel.content.widgets.filter(c => c.model.type === 'code');
  return {path: panel.context.path, ready: panel.context.isReady,
          kernel: session && session.kernel ? session.kernel.status : null,
          unrun: cells.filter(c => c.model.executionCount === null).length,
          busy: cells.filter(c => c.promptNode && c.promptNode.textContent.includes('*')).length};
}"""
JS_OUTPUTS = """() => window.jupyterapp.shell.currentWidget.content.widgets
  .filter(c => c.model.type === 'code').map(c => ({
    source: c.model.sharedModel.getSource().slice(0, 80),
    outputs: c.model.outputs.toJSON().map(o => ({type: o.output_type, name: o.name || null,
      text: o.text ? String(o.text).slice(0, 500) : null, ename: o.ename || null, evalue: o.evalue || null}))}))"""
JS_SHOW_LIVE = """async () => {
  const notebook = window.jupyterapp.shell.currentWidget.content;
  const i = notebook.widgets.findIndex(c => c.node.querySelector('.bptt-live'));
  notebook.activeCellIndex = i;
  await notebook.scrollToItem(i, 'center');
}"""
JS_IMAGE = """async (i) => {
  const img = document.querySelectorAll('.jp-Notebook .bptt-live')[i].querySelector('img');
  const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
  let s = ''; for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}"""


class Handler(http.server.SimpleHTTPRequestHandler):
    """The built site as a static host serves it, except that the lab's configuration exposes the app
    object to the page (the test's handle on the lab; not routed in the browser, which would turn its
    cache off)."""

    def do_GET(self):
        if urlparse(self.path).path.endswith("/lite/jupyter-lite.json"):
            config = json.loads(Path(self.translate_path(self.path)).read_text())
            config["jupyter-config-data"]["exposeAppInBrowser"] = True
            body = json.dumps(config).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(built_site):
    assert (built_site / "lite" / "lab" / "index.html").is_file(), "the book build made no JupyterLite site"
    handler = functools.partial(Handler, directory=str(built_site))
    httpd = http.server.ThreadingHTTPServer((HOST, 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://{HOST}:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    if SECONDS:
        print("\nJupyterLite seconds per chapter (open to an idle kernel, Run All):",
              {k: (round(a, 1), round(b, 1)) for k, (a, b) in SECONDS.items()})


@pytest.fixture(scope="module")
def chromium():
    with playwright_api.sync_playwright() as p:
        yield p.chromium


@pytest.fixture(scope="module")
def browser(chromium):
    b = chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
    yield b
    b.close()


class Reader(bl.LabPage):
    """One browser context: every request recorded, other hosts refused, console errors kept."""

    js_state = JS_STATE

    def __init__(self, browser, site, width=1280, context=None):
        self.site, self.host = site, urlparse(site).netloc
        self.context = context or browser.new_context(viewport={"width": width, "height": 1000})
        self.foreign, self.requests, self.errors = [], [], []
        self.context.on("request", self._request)
        self.responses = []
        self.context.on("response", lambda r: self.responses.append(r))
        self.page = None

    def _request(self, request):
        self.requests.append(request.url)
        url = urlparse(request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.netloc != self.host:
            self.foreign.append(request.url)       # and refused: Chromium resolves no other host

    def watch(self, page):
        page.on("console", lambda m: self.errors.append(f"{m.text} ({m.location.get('url')})")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"{e} {e.stack}"))
        self.page = page
        return page


    def wait_open(self, chapter, timeout=180):
        return self.wait(lambda s: s["path"] == f"chapters/{chapter}.ipynb" and s["ready"] and s["kernel"] == "idle",
                         timeout, f"{chapter} to open with an idle Pyodide kernel")

    def run_all(self):
        """Run All (awaited: the command resolves when every cell has run); then every cell has a count."""
        start = time.monotonic()
        self.page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        self.wait(lambda s: s["busy"] == 0 and s["kernel"] == "idle", 60, "Run All to settle")
        return time.monotonic() - start

    def problems(self):
        """Error outputs anywhere, and stderr output in any cell but the Lite setup cell (its pip and
        matplotlib font-cache messages)."""
        cells = self.page.evaluate(JS_OUTPUTS)
        assert cells and cells[0]["source"].startswith("# JupyterLite"), "the Lite copy lacks its setup cell"
        found = []
        for i, cell in enumerate(cells):
            for out in cell["outputs"]:
                if out["type"] == "error" or (out["name"] == "stderr" and i > 0):
                    found.append((i, cell["source"], out))
        return found

    def transferred(self):
        """Bytes received since the last call (bodies and headers; a file from the cache is not received)."""
        total, self.responses = bytes_received(self.responses), []
        return total

    def close(self):
        self.context.close()


def _open_from_the_chapter_page(reader, chapter, keyboard=False):
    """Click (or, with the keyboard, open) the launch menu's JupyterLite entry; return the new page."""
    page = reader.watch(reader.context.new_page())
    earlier = len(reader.requests)
    page.goto(f"{reader.site}/chapters/{chapter}.html", wait_until="networkidle")
    menu = page.get_by_role("button", name="Launch interactive content")
    link = page.get_by_role("link", name="JupyterLite")           # found only once the menu shows it
    href = page.locator("a.btn-jupyterlite").get_attribute("href")
    assert href == f"../lite/lab/index.html?path=chapters/{chapter}.ipynb"
    before = reader.requests[earlier:]
    with reader.context.expect_page() as popup:
        if keyboard:
            menu.focus()
            page.keyboard.press("Enter")
            link.wait_for(state="visible", timeout=5000)
            link.focus()
            page.keyboard.press("Enter")
        else:
            menu.click()
            link.click()
    assert not any("/lite/" in u for u in before), "the chapter page loaded JupyterLite before the click"
    return reader.watch(popup.value)


def test_a_chapter_runs_in_jupyterlite_with_a_live_spectral_widget_and_no_other_host(browser, site):
    """From the chapter page to a running chapter in JupyterLite: every cell runs without error, the
    spectral widget is live, moving ρ changes its image, and no request leaves 127.0.0.1."""
    reader = Reader(browser, site)
    try:
        start = time.monotonic()
        lab = _open_from_the_chapter_page(reader, "eigenvalues")
        reader.wait_open("eigenvalues")
        opened = time.monotonic() - start
        ran = reader.run_all()
        SECONDS.setdefault("eigenvalues", (opened, ran))
        assert reader.problems() == []
        assert reader.state()["unrun"] == 0, "Run All left cells unrun"
        boxes = lab.locator(".jp-Notebook .bptt-live")
        assert boxes.count() == 1, "the spectral-radius widget is not live in JupyterLite"
        box = boxes.first
        lab.evaluate(JS_SHOW_LIVE)                  # the lab shows only the cells near the view (windowing)
        box.wait_for(state="visible", timeout=10000)
        rho = box.locator(".widget-slider").filter(has_text="ρ").locator(".noUi-handle")
        assert rho.count() == 1
        assert box.locator(".widget-readout").first.inner_text().startswith("ρ = 1.00")
        SHOTS.mkdir(parents=True, exist_ok=True)
        box.screenshot(path=str(SHOTS / "eigenvalues-rho-1.00.png"))
        before = reader.page.evaluate(JS_IMAGE, 0)
        rho.focus()                                 # the keyboard, as in the Binder reader test
        for _ in range(3):
            lab.keyboard.press("ArrowRight")
        deadline = time.monotonic() + 20
        while reader.page.evaluate(JS_IMAGE, 0) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reader.page.evaluate(JS_IMAGE, 0) != before, "moving ρ did not change the image"
        assert box.locator(".widget-readout").first.inner_text() == "ρ = 1.15"
        box.screenshot(path=str(SHOTS / "eigenvalues-rho-1.15.png"))
        lab.screenshot(path=str(SHOTS / "eigenvalues-lab.png"))
        assert reader.foreign == [], f"requests to other hosts: {reader.foreign}"
        assert reader.errors == [], f"console errors: {reader.errors[:5]}"
    finally:
        reader.close()


JS_FIRST_RESULT = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.widgets.filter(c => c.model.type === 'code');
  const c = cells[1];                                  // the chapter's first code cell (0 is Lite's setup)
  return c.model.executionCount !== null && !c.promptNode.textContent.includes('*');
}"""


def test_launch_weight_and_time_to_the_first_result(chromium, site, tmp_path):
    """What a reader waits for and receives: from the click to the chapter's first cell run (the
    setup cell first), on a first launch and on a second one with the browser's cache warm. The
    numbers go to the README (printed here); a second launch must come mostly from the cache.
    A browser profile on disk, as a reader's is: an in-memory (incognito) cache keeps no 10 MB file."""
    context = chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path="/usr/bin/chromium",
                                                 args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 1000})
    reader = Reader(None, site, context=context)
    measured = []
    try:
        for launch in ("first", "second"):
            reader.transferred()
            start = time.monotonic()
            lab = _open_from_the_chapter_page(reader, "scalar_form")
            reader.wait_open("scalar_form")
            lab.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            deadline = time.monotonic() + 120
            while not lab.evaluate(JS_FIRST_RESULT):
                assert time.monotonic() < deadline, "no first result within 120 s"
                time.sleep(0.1)
            seconds = time.monotonic() - start
            reader.wait(lambda s: s["busy"] == 0 and s["kernel"] == "idle", 120, "Run All to finish")
            measured.append((launch, round(reader.transferred() / 2 ** 20, 2), round(seconds, 1)))
            for page in reader.context.pages:
                page.close()
        print("\nJupyterLite launch (MiB received, seconds from the click to the first result):", measured)
        (first, first_mib, _), (second, second_mib, _) = measured
        assert first_mib > 20, "the first launch should have received Pyodide"     # the measurement works
        assert second_mib < first_mib / 10, measured
        assert reader.foreign == [] and reader.errors == [], (reader.foreign, reader.errors[:3])
    finally:
        reader.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_the_launch_entry_is_named_and_works_from_the_keyboard(browser, site, width):
    """At a desktop and a phone width, the chapter's launch menu offers JupyterLite by name, and the
    keyboard alone opens it: the lab starts on that chapter."""
    reader = Reader(browser, site, width=width)
    try:
        _open_from_the_chapter_page(reader, "truncation", keyboard=True)
        reader.wait_open("truncation")
        assert reader.foreign == [] and reader.errors == []
    finally:
        reader.close()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_runs_in_jupyterlite_without_error(browser, site, chapter):
    """Run All in JupyterLite: no error and no stderr output in any chapter cell; nothing from another host."""
    reader = Reader(browser, site)
    try:
        start = time.monotonic()
        reader.watch(reader.context.new_page()).goto(f"{site}/lite/lab/index.html?path=chapters/{chapter}.ipynb")
        reader.wait_open(chapter)
        opened = time.monotonic() - start
        ran = reader.run_all()
        SECONDS[chapter] = (opened, ran)
        SHOTS.mkdir(parents=True, exist_ok=True)
        reader.page.screenshot(path=str(SHOTS / f"{chapter}.png"))
        assert reader.problems() == []
        assert reader.state()["unrun"] == 0, "Run All left cells unrun"
        assert reader.foreign == [], f"requests to other hosts: {reader.foreign}"
        assert reader.errors == [], f"console errors: {reader.errors[:5]}"
    finally:
        reader.close()


def test_the_lite_site_is_built_from_the_chapters_and_modules(built_site):
    """Every chapter and every module of pyproject.toml's only-include is in the Lite site's files and
    contents index; the committed notebooks have no Lite cell; Pyodide and the wheels are local."""
    import re

    lite = built_site / "lite"
    listed = {c["name"] for c in json.loads((lite / "api/contents/chapters/all.json").read_text())["content"]}
    only = re.search(r"^only-include\s*=\s*\[([^\]]*)\]", (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    modules = re.findall(r'"([^"]+)"', only)
    assert "bptt_core.py" in modules and "bptt_viz.py" in modules, modules
    for name in [f"{c}.ipynb" for c in CHAPTERS] + [Path(m).name for m in modules]:
        assert (lite / "files" / "chapters" / name).is_file() and name in listed, name
    for chapter in CHAPTERS:                     # the Lite copy: the setup cell, then the chapter as committed
        committed = json.loads((ROOT / "chapters" / f"{chapter}.ipynb").read_text())
        copy = json.loads((lite / "files" / "chapters" / f"{chapter}.ipynb").read_text())
        assert "JupyterLite" not in "".join(committed["cells"][0]["source"])
        assert copy["cells"][0]["source"].startswith("# JupyterLite") and "%pip install ipywidgets" in copy["cells"][0]["source"]
        assert ["".join(c["source"]) for c in copy["cells"][1:]] == ["".join(c["source"]) for c in committed["cells"]]
        assert all(c.get("execution_count") is None for c in copy["cells"])   # so a count means "run in Lite"
        assert copy["metadata"]["kernelspec"]["name"] == "python"          # Lite's Pyodide kernel
    config = json.loads((lite / "jupyter-lite.json").read_text())["jupyter-config-data"]
    kernel = config["litePluginSettings"]["@jupyterlite/pyodide-kernel-extension:kernel"]
    assert kernel["disablePyPIFallback"] is True
    assert kernel["pyodideUrl"] == "./static/pyodide/pyodide.js"
    assert (lite / "static/pyodide/pyodide.asm.wasm").is_file()
    assert sorted(p.name.split("-")[0] for p in (lite / "pypi").glob("*.whl")) == ["comm", "ipywidgets", "jupyterlab_widgets"]
