"""The built site as a reader meets it: a real headless Chromium over a local HTTP server.

Every page must render its title and body, typeset its maths, load every image, fail no request,
log no console error and ask no host but the local server for anything. Screenshots are saved in
test-artifacts/screenshots/.
"""
import functools
import http.server
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import ROOT

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def server(built_site):
    handler = functools.partial(QuietHandler, directory=str(built_site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


class Visit:
    """A page opened in a fresh context, with every request, failure and console error recorded."""

    def __init__(self, browser, server, path):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.foreign, self.failed, self.errors = [], [], []
        host = urlparse(server).netloc
        self.page.on("request", lambda r: self.foreign.append(r.url)
                     if urlparse(r.url).scheme in ("http", "https", "ws", "wss") and urlparse(r.url).netloc != host
                     else None)
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("response", lambda r: self.failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(f"{server}/{path}", wait_until="networkidle")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.context.close()


def site_pages():
    """Every HTML page the book has: intro, chapters, index and search (found from the sources)."""
    import yaml
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    chapters = [c["file"] for part in toc.get("parts", []) for c in part["chapters"]]
    return ["index.html", f"{toc['root']}.html", *[f"{c}.html" for c in chapters], "genindex.html", "search.html"]


@pytest.mark.parametrize("path", site_pages())
def test_page_renders_self_contained_with_maths_and_images(browser, server, built_site, path):
    with Visit(browser, server, path) as visit:
        page = visit.page
        assert page.title().strip(), "page has no title"
        assert len(page.locator("main").inner_text()) > 20, "page body is empty"
        html = (built_site / path).read_text()
        if 'class="math' in html:
            page.wait_for_selector("mjx-container", state="attached", timeout=15000)
            assert page.locator("mjx-container").count() >= html.count('class="math')
            assert page.locator("mjx-merror").count() == 0, "MathJax reported an error"
        images = page.evaluate("""() => Array.from(document.images).map(i =>
            ({src: i.src.slice(0, 80), ok: i.complete && i.naturalWidth > 0}))""")
        assert all(i["ok"] for i in images), [i["src"] for i in images if not i["ok"]]
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / (path.replace("/", "_") + ".png")), full_page=True)
        assert visit.foreign == [], f"requests to other hosts: {visit.foreign}"
        assert visit.failed == [], f"failed requests: {visit.failed}"
        assert visit.errors == [], f"console errors: {visit.errors}"


def chapter_pages():
    return [p for p in site_pages() if p.startswith("chapters/")]


@pytest.mark.parametrize("path", chapter_pages())
def test_kernel_free_sliders_scrub_through_their_frames(browser, server, path):
    """Every sweep on the static page moves: the frame and its label change as a reader drags."""
    with Visit(browser, server, path) as visit:
        sweeps = visit.page.locator("figure.bptt-sweep")
        assert sweeps.count() >= 1, "each chapter has a kernel-free interactive view"
        for i in range(sweeps.count()):
            sweep = sweeps.nth(i)
            img = sweep.locator("img")
            sweep.scroll_into_view_if_needed()
            sliders, outputs = sweep.locator("input[type=range]"), sweep.locator("output")
            for k in range(sliders.count()):                 # drag each slider through all its values
                slider, label = sliders.nth(k), outputs.nth(k)
                start, top = slider.input_value(), int(slider.get_attribute("max"))
                seen = set()
                for value in range(top + 1):
                    slider.fill(str(value))
                    seen.add((img.get_attribute("src")[-80:], label.inner_text()))
                assert len(seen) == top + 1, "some frames are identical or did not change"
                slider.fill(start)
            assert "Binder" in sweep.locator("figcaption").inner_text()
            sweep.screenshot(path=str(SHOTS / f"{path.replace('/', '_')}-sweep{i}.png"))
        assert visit.errors == []


@pytest.mark.parametrize("path", chapter_pages())
def test_exercise_solutions_are_hidden_until_clicked(browser, server, path):
    with Visit(browser, server, path) as visit:
        solutions = visit.page.locator("div.solution")
        assert solutions.count() >= 2, "each chapter has exercises with solutions"
        first = solutions.first
        body = first.locator("section, .solution-content, p").last
        first.scroll_into_view_if_needed()
        assert not body.is_visible(), "a solution is visible before it is revealed"
        first.locator(".admonition-title, button.toggle-button").first.click()
        body.wait_for(state="visible", timeout=5000)
        first.screenshot(path=str(SHOTS / f"{path.replace('/', '_')}-solution.png"))


@pytest.mark.parametrize("path", chapter_pages())
def test_launch_buttons_open_binder_jupyterlab_and_offer_the_notebook(built_site, path):
    html = (built_site / path).read_text()
    notebook = path.replace(".html", ".ipynb")
    assert f"mybinder.org/v2/gh/" in html and f"/main?urlpath=lab/tree/{notebook}" in html
    assert f"_sources/{notebook}" in html                                    # download the .ipynb
    assert (built_site / "_sources" / notebook).is_file()
