"""Static properties of the book: page weight, lean notebooks, no dead widgets, captions, numbering."""
import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

MB = 2 ** 20


def tracked(pattern):
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", pattern], cwd=ROOT, capture_output=True, text=True).stdout
    return [ROOT / p for p in out.split()]


def notebooks():
    return sorted((ROOT / "chapters").glob("*.ipynb"))


def test_every_page_of_the_site_weighs_under_3_MB(built_site):
    """A page's weight: its HTML (with inline frames) plus the local images it shows."""
    for page in built_site.rglob("*.html"):
        html = page.read_text()
        images = {(page.parent / src).resolve() for src in re.findall(r'<img[^>]+src="([^"#?]+)"', html)
                  if not src.startswith(("data:", "http"))}
        weight = len(html.encode()) + sum(p.stat().st_size for p in images)
        assert weight < 3 * MB, f"{page.relative_to(built_site)}: {weight / MB:.2f} MB"


def test_no_committed_file_over_1_MB():
    big = [p.relative_to(ROOT) for p in tracked("*") if p.is_file() and p.stat().st_size > MB]
    assert big == []


@pytest.mark.parametrize("nb_path", notebooks(), ids=lambda p: p.name)
def test_notebook_is_committed_with_outputs_and_no_live_widget_state(nb_path):
    nb = json.loads(nb_path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c.get("outputs") is not None for c in code)
    assert sum(bool(c["outputs"]) for c in code) >= len(code) // 2, "outputs were not committed"
    assert "widgets" not in nb.get("metadata", {}), "saved widget state would show dead widgets"
    for c in code:
        for out in c["outputs"]:
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {})
            assert out.get("output_type") != "error"


@pytest.mark.parametrize("nb_path", notebooks(), ids=lambda p: p.name)
def test_every_figure_has_a_caption_and_the_chapter_imports_the_core(nb_path):
    nb = json.loads(nb_path.read_text())
    sources = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "import bptt_core" in sources
    for c in nb["cells"]:
        if c["cell_type"] == "code" and any("image/png" in o.get("data", {}) for o in c.get("outputs", [])):
            caption = c["metadata"].get("mystnb", {}).get("figure", {}).get("caption", "")
            assert len(caption) > 40, f"figure without a caption: {''.join(c['source'])[:60]}"


def test_no_page_ships_widget_managers_or_cdn_scripts(built_site):
    for page in built_site.rglob("*.html"):
        html = page.read_text()
        assert "require.min.js" not in html and "html-manager" not in html, page.name
        assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', html), page.name


def test_chapter_equations_are_numbered_and_cross_referenced(built_site):
    """Every chapter numbers equations and refers to them; every reference lands on a labelled equation
    somewhere in the book."""
    pages = [built_site / "intro.html", *(built_site / "chapters").glob("*.html")]
    labels = {lab for page in pages for lab in re.findall(r'id="equation-([\w-]+)"', page.read_text())}
    for page in (built_site / "chapters").glob("*.html"):
        html = page.read_text()
        assert re.search(r'id="equation-', html), f"{page.name} has no numbered equation"
        refs = set(re.findall(r'href="[^"]*#equation-([\w-]+)"', html))
        assert refs, f"{page.name} refers to no equation"
        assert refs <= labels, f"{page.name}: dangling equation references {refs - labels}"


def test_each_page_lists_the_references_it_cites(built_site):
    """Every footnote citation on a page points at an entry of that page's reference list, and every
    entry there is a formatted reference (authors and a year), not a bare key."""
    for page in [built_site / "intro.html", *(built_site / "chapters").glob("*.html")]:
        html = page.read_text()
        cited = set(re.findall(r'href="#(footcite-[\w-]+)"', html))
        listed = dict(re.findall(r'<aside class="footnote brackets" id="(footcite-[\w-]+)"[^>]*>(.*?)</aside>', html, re.S))
        assert cited and cited == set(listed), f"{page.name}: cited {cited}, listed {set(listed)}"
        for key, entry in listed.items():
            assert re.search(r"(19|20)\d\d", entry) and len(re.sub("<[^>]+>", "", entry)) > 40, key


def test_no_page_repeats_an_id(built_site):
    for page in built_site.rglob("*.html"):
        ids = re.findall(r'\sid="([^"]+)"', page.read_text())
        repeated = {i for i in ids if ids.count(i) > 1}
        assert not repeated, f"{page.relative_to(built_site)}: {repeated}"


def test_printed_output_is_one_box_per_cell(built_site):
    """Consecutive prints of a cell are merged (nb_merge_streams), so a printed table stays one table."""
    for page in (built_site / "chapters").glob("*.html"):
        html = page.read_text()
        split = re.findall(r'<div class="output stream[^"]*"[^>]*>\s*<div class="highlight">.*?</div>\s*</div>\s*'
                           r'<div class="output stream', html, re.S)
        assert not split, f"{page.name}: a cell's printed output is split into several boxes"


def test_site_is_lean_and_serves_its_slider_frames_as_files(built_site):
    """No fontawesome.js (1.5 MB) and no MathJax menu; the search index only on the search page; every
    slider frame a page refers to is a file in _frames/, and no frame is inlined as base64."""
    assert not (built_site / "_static" / "scripts" / "fontawesome.js").exists()
    assert not (built_site / "mathjax" / "ui" / "menu.js").exists()
    assert (built_site / "_static" / "bptt-icons" / "fa-solid-900.woff").stat().st_size < 20_000
    for page in built_site.rglob("*.html"):
        html = page.read_text()
        assert "fontawesome.js" not in html and "data:image/png;base64" not in html, page.name
        assert ("searchindex.js" in html) == (page.name == "search.html"), page.name
        for frames in re.findall(r'data-frames="([^"]+)"', html):
            names = json.loads(frames.replace("&quot;", '"'))
            assert all((built_site / "_frames" / n).is_file() for n in names), page.name


def test_figures_load_lazily_and_are_palette_pngs(built_site):
    """Chapter figures are stored at 2x (retina) and re-encoded with a palette at build time; every
    image in a page's body loads as the reader scrolls to it."""
    from PIL import Image

    pngs = list((built_site / "_images").glob("*.png"))
    assert pngs
    for png in pngs:
        with Image.open(png) as image:
            assert image.mode == "P" or "A" in image.mode, png.name
    for page in (built_site / "chapters").glob("*.html"):
        body = page.read_text().split('<article class="bd-article">', 1)[1]
        assert all("loading=\"lazy\"" in tag for tag in re.findall(r"<img\b[^>]*>", body)), page.name
