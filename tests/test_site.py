"""The built site as a reader meets it: a real headless Chromium over a local HTTP server, at a desktop
(1280 px) and a phone (390 px) width, with the OS set to light and to dark.

Every page must render its title and body, typeset its maths, load every image, fail no request, log
no console error and ask no host but the local server for anything; axe-core (vendored from npm by
tools/vendor_axe.sh) must find no critical or serious violation; no display equation may be clipped;
formulas are not tab stops. The navigation drawers open, the kernel-free sliders scrub through frames
that are files, solutions open from buttons with real names, and a first visit stays light.
Screenshots of every page at both widths and in both modes go to test-artifacts/screenshots/.
"""
import functools
import http.server
import json
import re
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import ROOT, bytes_received

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
SHOTS = ROOT / "test-artifacts" / "screenshots"
AXE = ROOT / "_vendor" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTHS = {"desktop": 1280, "phone": 390}
MiB = 2 ** 20


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
    """A page opened in a fresh context, with every request, its size, every failure and every console
    error recorded. `scheme` is the OS colour scheme the browser reports ("light" or "dark")."""

    def __init__(self, browser, server, path, width=1280, scheme="light"):
        self.context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
        self.page = self.context.new_page()
        self.server = server
        self.foreign, self.failed, self.errors, self.responses = [], [], [], []
        host = urlparse(server).netloc
        self.page.on("request", lambda r: self.foreign.append(r.url)
                     if urlparse(r.url).scheme in ("http", "https", "ws", "wss") and urlparse(r.url).netloc != host
                     else None)
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("response", self._response)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.goto(path)

    def _response(self, r):
        if r.status >= 400:
            self.failed.append(f"{r.url} (HTTP {r.status})")
        self.responses.append(r)

    def goto(self, path):
        self.page.goto(f"{self.server}/{path}", wait_until="networkidle")

    def read_to_the_end(self):
        """Scroll through the whole page, as a reader would, so that every lazy image loads."""
        self.page.evaluate("""async () => {
            for (let y = 0; y < document.body.scrollHeight; y += 500) {
                window.scrollTo(0, y);
                await new Promise(r => setTimeout(r, 30));
            }
        }""")
        self.page.wait_for_load_state("networkidle")

    def transferred(self):
        """Bytes received since the last call (bodies and headers; a cached file is not received)."""
        total, self.responses = bytes_received(self.responses), []
        return total

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


def chapter_pages():
    return [p for p in site_pages() if p.startswith("chapters/")]


def shot_name(path, *parts):
    return "-".join([path.replace("/", "_").removesuffix(".html"), *parts]) + ".png"


def wait_for_maths(page, html):
    if 'class="math' in html:
        page.wait_for_selector("mjx-container", state="attached", timeout=15000)
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=15000)
        page.evaluate("() => MathJax.startup.promise")
        page.wait_for_timeout(200)                     # bptt-site.js marks wide equations after typesetting


def axe_violations(page):
    """Critical and serious axe-core violations, as 'rule: selector' strings."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ["violations"], preload: false});
        return r.violations.filter(v => v.impact === "critical" || v.impact === "serious")
            .flatMap(v => v.nodes.map(n => v.id + ": " + n.target.join(" ")));
    }""")
    return found


def clipped_equations(page):
    """Display equations a reader cannot see in full: content wider than its box that cannot scroll,
    a scrolling box without the visible cue or without a tab stop, or a box that leaves the screen."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('div.math mjx-container[display="true"]'))
        .map((c, i) => {
            const box = c.getBoundingClientRect(), style = getComputedStyle(c);
            const wide = c.scrollWidth > c.clientWidth + 1;
            const label = (c.parentElement.id || "equation #" + i);
            if (box.left < -1 || box.right > innerWidth + 1) return label + ": outside the screen";
            if (!wide) return null;
            if (!["auto", "scroll"].includes(style.overflowX)) return label + ": cut, does not scroll";
            if (!c.classList.contains("bptt-scrolls") || !style.backgroundImage.includes("gradient"))
                return label + ": scrolls without a cue";
            if (c.tabIndex !== 0) return label + ": scrolls, but not from the keyboard";
            c.scrollLeft = c.scrollWidth;
            const end = c.scrollLeft;
            c.scrollLeft = 0;
            return end >= c.scrollWidth - c.clientWidth - 1 ? null : label + ": cannot scroll to its end";
        }).filter(Boolean)""")


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", list(WIDTHS))
@pytest.mark.parametrize("path", site_pages())
def test_page_renders_self_contained_accessible_and_unclipped(browser, server, built_site, path, size, scheme):
    with Visit(browser, server, path, width=WIDTHS[size], scheme=scheme) as visit:
        page = visit.page
        assert page.title().strip(), "page has no title"
        assert len(page.locator("main").inner_text()) > 20, "page body is empty"
        assert page.evaluate("document.documentElement.dataset.theme") == scheme, "the page ignores the OS mode"
        html = (built_site / path).read_text()
        wait_for_maths(page, html)
        if 'class="math' in html:
            assert page.locator("mjx-container").count() >= html.count('class="math')
            assert page.locator("mjx-merror").count() == 0, "MathJax reported an error"
        visit.read_to_the_end()
        images = page.evaluate("""() => Array.from(document.images)
            .filter(i => i.getClientRects().length > 0)          // lazy images in a closed solution wait
            .map(i => ({src: i.src.slice(0, 80), ok: i.complete && i.naturalWidth > 0}))""")
        assert all(i["ok"] for i in images), [i["src"] for i in images if not i["ok"]]
        assert clipped_equations(page) == []
        unmarked_tables = page.evaluate("""() => Array.from(document.querySelectorAll(".pst-scrollable-table-container"))
            .filter(c => c.scrollWidth > c.clientWidth + 1)
            .filter(c => !(c.previousElementSibling && c.previousElementSibling.classList.contains("bptt-scroll-hint")
                           && c.previousElementSibling.getClientRects().length > 0)).length""")
        assert unmarked_tables == 0, f"{unmarked_tables} tables scroll sideways with no visible cue"
        focusable_maths = page.evaluate("""() => Array.from(document.querySelectorAll("mjx-container"))
            .filter(c => c.tabIndex >= 0 && !c.classList.contains("bptt-scrolls")).length""")
        assert focusable_maths == 0, f"{focusable_maths} formulas are tab stops"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(300)
        page.screenshot(path=str(SHOTS / shot_name(path, size, scheme)), full_page=True)
        assert visit.foreign == [], f"requests to other hosts: {visit.foreign}"
        assert visit.failed == [], f"failed requests: {visit.failed}"
        assert visit.errors == [], f"console errors: {visit.errors}"
        if size == "desktop":               # colours and names do not change with the width; axe is slow
            assert axe_violations(page) == []


@pytest.mark.parametrize("path", chapter_pages())
def test_every_image_has_alt_text_that_describes_it(built_site, path):
    """Alt text is a sentence, not the file name myst-nb puts there when a cell has no image.alt."""
    html = (built_site / path).read_text()
    for tag in re.findall(r"<img\b[^>]*>", html):
        alt = re.search(r'alt="([^"]*)"', tag)
        assert alt, f"image without alt: {tag[:120]}"
        text = alt.group(1)
        assert not re.search(r"\.(png|jpe?g|svg)$", text) and len(text.split()) >= 2, f"alt text is {text!r}"


MIN_TEXT_PX = 9


def recorded_text_px(file):
    """(width in pixels, smallest font size in pixels) of a figure PNG, as bptt_viz recorded it at build
    time (bptt_viz.TEXT_PX_KEY); the size is None when the PNG has no record."""
    from PIL import Image

    import bptt_viz

    with Image.open(file) as image:
        text = image.text                      # reads every chunk
        size = text.get(bptt_viz.TEXT_PX_KEY)
        return image.size[0], None if size is None else float(size)


@pytest.mark.parametrize("size", list(WIDTHS))
@pytest.mark.parametrize("path", chapter_pages())
def test_figure_text_is_at_least_9_px_as_displayed(browser, server, built_site, path, size):
    """Every figure's smallest text (tick labels, legends, titles; bptt_viz records it in each PNG at
    build time) is at least 9 CSS pixels as the figure is displayed, solutions opened, at 1280 px and
    on a 390 px phone, where wide figures shrink to the column. For a slider, every frame counts."""
    with Visit(browser, server, path, width=WIDTHS[size]) as visit:
        page = visit.page
        page.evaluate("() => document.querySelectorAll('div.solution button.toggle-button').forEach(b => b.click())")
        page.wait_for_timeout(300)
        shown = page.evaluate("""() => Array.from(document.querySelectorAll('main img'))
            .filter(i => i.getClientRects().length > 0)
            .map(i => ({path: decodeURIComponent(new URL(i.src).pathname), width: i.getBoundingClientRect().width,
                        frames: i.closest('figure.bptt-sweep') ? JSON.parse(i.closest('figure.bptt-sweep').dataset.frames) : null}))""")
    if "image/png" not in (ROOT / path.replace(".html", ".ipynb")).read_text():
        assert shown == []
        return
    assert shown, "the chapter's figures are not on the page"
    smallest, too_small = {}, []
    for image in shown:
        files = [built_site / "_frames" / f for f in image["frames"]] if image["frames"] else \
            [built_site / image["path"].lstrip("/")]
        for file in files:
            width_px, text_px = recorded_text_px(file)
            assert text_px is not None, f"{file.name}: a figure PNG without its text size recorded (does the chapter import bptt_viz?)"
            if text_px == 0:                  # a figure without text
                continue
            displayed = text_px * image["width"] / width_px
            smallest[file.name] = round(displayed, 1)
            if displayed < MIN_TEXT_PX:
                too_small.append(f"{file.name}: {displayed:.1f} px")
    print(path, size, "smallest text as displayed:", min(smallest.values(), default=None), "px")
    assert too_small == [], f"figure text under {MIN_TEXT_PX} px at {WIDTHS[size]} px: {too_small}"


@pytest.mark.parametrize("size", list(WIDTHS))
def test_navigation_drawers_open_from_the_visible_buttons(browser, server, size):
    """☰ opens the book's table of contents and the contents button this page's outline (drawers on
    a phone; on a desktop ☰ hides and shows the sidebar, whose outline is already on screen)."""
    with Visit(browser, server, "chapters/truncation.html", width=WIDTHS[size]) as visit:
        page = visit.page
        toggles = {kind: [b for b in page.locator(f".{kind}-toggle").all() if b.is_visible()]
                   for kind in ("primary", "secondary")}
        assert toggles["primary"], "no visible ☰ button"
        if size == "phone":
            assert toggles["secondary"], "no visible contents button"
            for kind, expected in (("primary", "Eigenvalue analysis"), ("secondary", "Summary")):
                toggles[kind][0].click()
                dialog = page.locator(f"#pst-{kind}-sidebar-modal")
                dialog.wait_for(state="visible", timeout=3000)
                assert dialog.get_by_role("link", name=expected).first.is_visible()
                page.screenshot(path=str(SHOTS / f"drawer-{kind}-{size}.png"))
                page.keyboard.press("Escape")
                dialog.wait_for(state="hidden", timeout=3000)
        else:
            sidebar = page.locator("#pst-primary-sidebar")
            assert sidebar.is_visible()
            toggles["primary"][0].click()
            sidebar.wait_for(state="hidden", timeout=3000)
            toggles["primary"][0].click()
            sidebar.wait_for(state="visible", timeout=3000)
            assert page.locator("#pst-secondary-sidebar").get_by_role("link", name="Summary").is_visible()
        assert visit.errors == []


def sweep_frames(built_site, sweep):
    frames = json.loads(sweep.get_attribute("data-frames"))
    return [built_site / "_frames" / f for f in frames]


@pytest.mark.parametrize("path", chapter_pages())
def test_kernel_free_sliders_scrub_through_frame_files(browser, server, built_site, path):
    """Every sweep on the static page moves: the frame (a cacheable file) and its label change as a
    reader drags a slider or picks an option; every control has a name and a value text."""
    from PIL import Image

    with Visit(browser, server, path, width=390) as visit:
        sweeps = visit.page.locator("figure.bptt-sweep")
        if "bv.sweep" not in (ROOT / path.replace(".html", ".ipynb")).read_text() \
                and "spectral_widget" not in (ROOT / path.replace(".html", ".ipynb")).read_text():
            assert sweeps.count() == 0
            return
        assert sweeps.count() >= 1, "the chapter's sweep is not on the page"
        for i in range(sweeps.count()):
            sweep = sweeps.nth(i)
            img = sweep.locator("img.bptt-frame")
            sweep.scroll_into_view_if_needed()
            files = sweep_frames(built_site, sweep)
            assert all(f.is_file() for f in files)
            sizes = set()
            for f in files:
                with Image.open(f) as image:
                    sizes.add(image.size)
            assert len(sizes) == 1, f"frames of one sweep differ in size: {sizes}"
            (w, h), = sizes
            assert (int(img.get_attribute("width")), int(img.get_attribute("height"))) == (round(w / 2), round(h / 2)), \
                "frames are not drawn at twice their displayed size"
            assert img.get_attribute("src").startswith("../_frames/")
            # On a phone each control is one line: a slider's value beside its track, both options of
            # a choice side by side (not wrapped to the left edge under the control's name).
            spread = sweep.evaluate("""s => Array.from(s.querySelectorAll('.bptt-control')).map(c => {
                const mids = Array.from(c.querySelectorAll('input, output')).map(e => {
                    const r = e.getBoundingClientRect(); return r.top + r.height / 2; });
                return Math.round(Math.max(...mids) - Math.min(...mids)); })""")
            assert all(d <= 8 for d in spread), f"a control wraps onto a second line at 390 px: {spread} px"
            seen = set()
            for slider in sweep.locator('input[type="range"]').all():
                assert slider.evaluate("s => s.labels.length === 1 && s.labels[0].textContent.trim() !== ''")
                start, top = slider.input_value(), int(slider.get_attribute("max"))
                output = slider.locator("xpath=following-sibling::output")
                for value in range(top + 1):
                    slider.fill(str(value))
                    assert img.evaluate("i => i.decode().then(() => i.naturalWidth)") > 0   # the frame loads
                    text = slider.get_attribute("aria-valuetext")
                    assert text == output.inner_text() and re.search(r"\S", text)
                    seen.add((img.get_attribute("src"), text))
                slider.fill(start)
                assert len({s for s, _ in seen}) >= top + 1, "some frames did not change"
                seen.clear()
            for group in sweep.locator("fieldset").all():
                assert group.locator("legend").inner_text().strip()
                radios = group.locator('input[type="radio"]').all()
                assert len(radios) == 2
                before = img.get_attribute("src")
                unchecked = next(r for r in radios if not r.is_checked())
                unchecked.check()
                assert img.get_attribute("src") != before
                assert img.evaluate("i => i.decode().then(() => i.naturalWidth)") > 0
                next(r for r in radios if r != unchecked).check()
                assert img.get_attribute("src") == before
            assert "Binder" in sweep.locator("figcaption").inner_text()
            sweep.screenshot(path=str(SHOTS / shot_name(path, f"sweep{i}", "phone")))
        assert visit.failed == [] and visit.errors == []


@pytest.mark.parametrize("path", chapter_pages())
def test_exercise_solutions_open_from_a_named_button(browser, server, path):
    with Visit(browser, server, path) as visit:
        solutions = visit.page.locator("div.solution")
        assert solutions.count() >= 2, "each chapter has exercises with solutions"
        names = [b.get_attribute("aria-label") for b in visit.page.locator("div.solution button.toggle-button").all()]
        assert names and all(re.fullmatch(r"Solution to Exercise \d+", n or "") for n in names), names
        first = solutions.first
        body = first.locator("section, .solution-content, p").last
        first.scroll_into_view_if_needed()
        assert not body.is_visible(), "a solution is visible before it is revealed"
        button = first.locator("button.toggle-button")
        assert button.get_attribute("aria-expanded") == "false"
        button.click()
        body.wait_for(state="visible", timeout=5000)
        assert button.get_attribute("aria-expanded") == "true"
        first.screenshot(path=str(SHOTS / shot_name(path, "solution")))


def test_first_visit_is_light_and_a_second_chapter_costs_little(browser, server):
    """Bytes received, uncompressed (as python's http.server sends them; a real host compresses text
    further), with the page read to its end (every figure loaded): a first visit to any chapter
    ≤ 2 MiB; the next chapter, with the browser's cache warm, ≤ 0.5 MiB more. Slider frames are files:
    only the first frame of each is loaded."""
    chapters = chapter_pages()
    weights = {}
    for k, first in enumerate(chapters):
        second = chapters[(k + 1) % len(chapters)]
        with Visit(browser, server, first) as visit:
            visit.read_to_the_end()
            cold = visit.transferred()
            visit.goto(second)
            visit.read_to_the_end()
            warm = visit.transferred()
            assert not any("fontawesome.js" in u or "searchindex" in u for u in visit.page.evaluate(
                "() => performance.getEntriesByType('resource').map(e => e.name)"))
        weights[first] = (round(cold / MiB, 2), round(warm / MiB, 2))
    print("first visit, then the next chapter (MiB):", weights)
    assert all(cold <= 2.0 for cold, _ in weights.values()), weights
    assert all(warm <= 0.5 for _, warm in weights.values()), weights


def test_search_snippets_show_formulas_without_tex(browser, server):
    with Visit(browser, server, "search.html?q=gradient") as visit:
        page = visit.page
        page.wait_for_selector("#search-results li p.context", timeout=20000)
        page.wait_for_timeout(1000)
        snippets = page.locator("#search-results li p.context").all_inner_texts()
        assert snippets, "no search snippets"
        tex = [s for s in snippets if re.search(r"\\[A-Za-z]+|\\\(|\\\)", s)]
        assert tex == [], tex[:3]


@pytest.mark.parametrize("path", chapter_pages())
def test_launch_buttons_open_binder_jupyterlab_and_offer_the_notebook(built_site, path):
    html = (built_site / path).read_text()
    notebook = path.replace(".html", ".ipynb")
    assert f"mybinder.org/v2/gh/" in html and f"/main?urlpath=lab/tree/{notebook}" in html
    assert f"_sources/{notebook}" in html                                    # download the .ipynb
    assert (built_site / "_sources" / notebook).is_file()
