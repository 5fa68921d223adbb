"""The Binder reader: what Binder installs, JupyterLab on 127.0.0.1, Chromium, every chapter.

A Python 3.11 venv with Binder's base packages and exactly `binder/requirements.txt` (cached under
~/.cache/bptt-book/, see tests/binder_lab.py) runs one JupyterLab over a fresh copy of the repository.
For every chapter, opened in a fresh workspace: opening does not mark it modified; Run All gives no
error and no stderr output; each widget is shown exactly once and live (no saved still, no "model not
found"); every slider of every widget, moved with the keyboard, changes the image; the MyST reads as
text, not as source. The spectral-radius widget gives the identical image after a T round trip. A
notebook saved while live and reopened without its kernel shows the saved still, not an error.
Screenshots go to test-artifacts/binder-reader/; Run All times to test-artifacts/binder-reader/times.json.
This replaces the headless reader-runtime test: the chapters run here once, in the reader's setting.
"""
import base64
import io
import json
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from PIL import Image

import binder_lab as bl
from bptt_viz import RUN_LINE

CHAPTERS = sorted(p.name for p in (bl.ROOT / "chapters").glob("*.ipynb"))
ARTIFACTS = bl.ROOT / "test-artifacts" / "binder-reader"
TIMES = {}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("binder")
    (tmp / "repo").mkdir()
    (tmp / "home").mkdir()
    venv = bl.binder_venv()
    repo = bl.reader_copy(tmp / "repo", venv)
    lab = bl.JupyterLab(venv, repo, tmp / "home")
    yield venv, repo, lab
    lab.stop()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "times.json").write_text(json.dumps(TIMES, indent=1))


@pytest.fixture(scope="module")
def reader(setup):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        r = bl.Reader(p, setup[2], ARTIFACTS)
        yield r
        r.close()


def test_binder_install_is_editable_and_leaves_no_debris(setup):
    venv, repo, _ = setup
    debris = [p.name for p in repo.iterdir() if p.name == "build" or p.name.endswith(".egg-info")]
    assert debris == []
    py = str(venv / "bin" / "python")
    where = subprocess.run([py, "-c", "import bptt_core; print(bptt_core.__file__)"], cwd="/",
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where == str(repo / "bptt_core.py")
    core = repo / "bptt_core.py"
    original = core.read_text()
    try:                                              # a reader's edit, then a kernel restart
        core.write_text(original + "\nREADER_EDIT = 12345\n")
        seen = subprocess.run([py, "-c", "import bptt_core; print(bptt_core.READER_EDIT)"], cwd="/",
                              capture_output=True, text=True, check=True).stdout.strip()
    finally:
        core.write_text(original)
    assert seen == "12345"


def test_chapters_store_the_metadata_a_binder_kernel_reports():
    """JupyterLab rewrites kernelspec and language_info from the kernel it starts; any difference
    (even Python's patch release) marks the chapter modified as soon as it opens."""
    sys.path.insert(0, str(bl.ROOT / "tools"))
    import execute_chapters as ec

    for chapter in CHAPTERS:
        meta = json.loads((bl.ROOT / "chapters" / chapter).read_text())["metadata"]
        assert meta["kernelspec"] == ec.KERNELSPEC, chapter
        assert meta["language_info"] == ec.LANGUAGE_INFO, chapter


def widget_cells(outputs):
    return [i for i, c in enumerate(outputs) if any(call in c["source"] for call in bl.WIDGET_CALLS)]


def widget_cells_index(reader, outputs):
    """The index among all cells (markdown too) of the first widget cell."""
    source = outputs[widget_cells(outputs)[0]]["source"]
    return reader.page.evaluate("""(src) => window.jupyterapp.shell.currentWidget.content.widgets
        .findIndex(c => c.model.sharedModel.getSource() === src)""", source)


TEX_SOURCE = re.compile(r"\$|\\[A-Za-z]+")


def assert_typeset(locator, what, timeout=15.0):
    """The text shows no TeX source ($, \\mathbf, ...): a live widget's caption is typeset, not raw.
    MathJax typesets after the widget appears, so wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        text = locator.inner_text()
        if not TEX_SOURCE.search(text):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} shows TeX source: {TEX_SOURCE.search(text).group()!r} in {text[-300:]!r}")
        time.sleep(0.25)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_as_a_binder_reader_sees_it(reader, chapter):
    name = chapter.removesuffix(".ipynb")
    reader.open(chapter, f"fresh-{name}")
    time.sleep(2.0)                                   # JupyterLab updates metadata just after opening
    assert reader.state()["dirty"] is False, "opening the chapter marked it modified"

    text = reader.page.locator(".jp-Notebook").inner_text()
    for raw in ("```{", ":label:", "{exercise}", "{solution}", "$$ ("):
        assert raw not in text, f"MyST shown as source: {raw!r}"

    before = reader.outputs()                         # as committed: a still and a line per widget
    for i in widget_cells(before):
        assert [o["mimes"] for o in before[i]["outputs"]][-2:] == [["image/png", "text/plain"],
                                                                   ["text/markdown", "text/plain"]], i
    if widget_cells(before):
        first = reader.page.locator(".jp-Notebook .jp-Cell").nth(widget_cells_index(reader, before))
        first.scroll_into_view_if_needed()
        reader.screenshot(f"{name}-opened-still", first.locator(".jp-OutputArea"))

    TIMES[chapter] = round(reader.run_all(), 1)
    outputs = reader.outputs()
    problems = [(i, o) for i, c in enumerate(outputs) for o in c["outputs"]
                if o["type"] == "error" or o["name"] == "stderr"]
    assert problems == []

    cells = widget_cells(outputs)
    assert [outputs[i]["live"] for i in cells] == [1] * len(cells), "each widget must be shown once"
    assert sum(c["live"] for c in outputs) == len(cells)
    page_text = reader.page.locator(".jp-Notebook").inner_text()
    assert "Error displaying widget" not in page_text
    assert RUN_LINE not in page_text          # the saved still stays hidden while live
    stills = reader.page.locator(".jp-Notebook .bptt-saved-still")
    assert stills.count() == len(cells) and not any(stills.nth(k).is_visible() for k in range(stills.count()))

    for b in range(reader.boxes().count()):
        reader.boxes().nth(b).scroll_into_view_if_needed()
        assert_typeset(reader.boxes().nth(b), f"widget {b}")
        reader.screenshot(f"{name}-widget{b}-start", reader.boxes().nth(b))
        for s in range(reader.sliders(b)):
            position, last = reader.slider_state(b, s)
            key = "ArrowRight" if position < last else "ArrowLeft"
            before = reader.image_b64(b)
            ms = reader.press(b, s, key)
            assert ms is not None, f"widget {b}, slider {s}: the image did not change"
            assert reader.image_b64(b) != before
        reader.screenshot(f"{name}-widget{b}-moved", reader.boxes().nth(b))


def test_spectral_widget_is_identical_after_a_T_round_trip(reader):
    reader.open("eigenvalues.ipynb", "spectral-round-trip")
    reader.run_all()
    boxes = reader.boxes()
    spectral = [b for b in range(boxes.count()) if reader.sliders(b) == 4]
    assert len(spectral) == 1
    b = spectral[0]
    boxes.nth(b).scroll_into_view_if_needed()
    start = reader.image_b64(b)
    assert reader.press(b, 3, "ArrowRight") is not None          # T = 200 -> 500
    assert reader.press(b, 3, "End") is not None                 # -> 1000
    wide = reader.image_b64(b)
    assert reader.press(b, 3, "ArrowLeft") is not None           # -> 500
    assert reader.press(b, 3, "ArrowLeft") is not None           # -> 200
    assert reader.image_b64(b) == start
    assert wide != start
    reader.screenshot("eigenvalues-spectral-round-trip", boxes.nth(b))
    image = Image.open(io.BytesIO(base64.b64decode(start)))
    assert image.width > 400 and image.height > 400          # the whole stacked figure, not a placeholder


def test_saved_while_live_and_reopened_without_its_kernel_shows_the_still(reader, setup):
    """JupyterLab's autosave stores the widget views; a new kernel has no models for them."""
    lab = setup[2]
    reader.open("minibatches.ipynb", "autosave")
    reader.run_all()
    reader.command("docmanager:save")
    reader.wait(lambda s: not s["dirty"], 30, "the save")
    saved = json.loads((setup[1] / "chapters" / "minibatches.ipynb").read_text())
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for c in saved["cells"] for o in c.get("outputs", []))
    for kernel in json.load(urllib.request.urlopen(f"{lab.url}/api/kernels")):
        req = urllib.request.Request(f"{lab.url}/api/kernels/{kernel['id']}", method="DELETE")
        urllib.request.urlopen(req)
    reader.open("minibatches.ipynb", "autosave-reopened")
    time.sleep(3.0)
    stills = reader.page.locator(".jp-Notebook .bptt-saved-still")
    assert stills.count() >= 1
    cell = reader.page.locator(".jp-Notebook .jp-Cell", has=reader.page.locator(".bptt-saved-still")).first
    cell.scroll_into_view_if_needed()
    time.sleep(1.0)
    reader.screenshot("minibatches-reopened-without-kernel", cell)
    assert stills.first.is_visible()
    text = cell.inner_text()
    assert "Error displaying widget" not in text and "Loading widget" not in text
    assert RUN_LINE in text
    # restore the committed notebook for the other tests
    (setup[1] / "chapters" / "minibatches.ipynb").write_bytes((bl.ROOT / "chapters" / "minibatches.ipynb").read_bytes())


def test_notebook_7_shows_a_chapter_live(reader, setup):
    lab = setup[2]
    page = reader.page
    page.goto(f"{lab.url}/notebooks/chapters/minibatches.ipynb")
    page.wait_for_selector(".jp-Notebook", timeout=60000)
    page.wait_for_function("() => document.querySelector('#jp-main-statusbar, .jp-NotebookKernelStatus') !== null"
                           " || document.title.length > 0", timeout=30000)
    time.sleep(3.0)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()
    page.wait_for_selector(".jp-Notebook .bptt-live img", timeout=120000)
    assert page.locator(".jp-Notebook .bptt-live").count() == 1
    assert not page.locator(".jp-Notebook .bptt-saved-still").first.is_visible()
    page.locator(".jp-Notebook .bptt-live").first.scroll_into_view_if_needed()
    reader.screenshot("notebook7-minibatches", page.locator(".jp-Notebook .bptt-live").first)
