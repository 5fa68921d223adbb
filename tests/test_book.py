"""The book builds with no warnings and its landing page carries what a reader needs first."""
import re

import yaml

from conftest import ROOT


def test_landing_page_builds_with_notation_table_and_references(built_site):
    page = (built_site / "intro.html").read_text()
    assert "<title>Backpropagation Through Time" in page
    for source_symbol in ("s_t", "U", "V", "E_t", r"\mathbf{h}_{(t)}"):           # the notation table
        assert source_symbol in page
    assert re.search(r"Werbos.*1990", page, re.S) and "Pascanu" in page           # bibliography rendered


def test_config_points_binder_at_main_and_executes_fresh():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["branch"] == "main"
    assert config["launch_buttons"]["binderhub_url"].startswith("https://mybinder.org")
    assert config["execute"]["execute_notebooks"] == "force"


def test_config_follows_the_os_colour_mode_and_loads_only_needed_mathjax():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    assert config["html_context"]["default_mode"] == "auto"
    assert config["mathjax_path"].endswith("startup.js")
    assert "ui/menu" not in config["mathjax3_config"]["loader"]["load"]      # the menu made formulas tab stops
    assert config["nb_merge_streams"] is True


def test_site_mode_writes_constant_size_frames_at_twice_their_display_size(tmp_path, monkeypatch):
    """bv.sweep in SITE mode: every frame a PNG file named by its content, all frames of one sweep the
    same size (a tick label that grows does not make the plot jump), drawn at 2x the size the page shows;
    controls with two options are radio buttons, sliders carry their value as text."""
    import re as re_
    from PIL import Image
    import matplotlib.pyplot as plt
    import bptt_viz as bv
    from IPython.display import HTML

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.extend(objs))
    monkeypatch.setenv("BPTT_STATIC_FRAMES", "1")
    monkeypatch.setenv("BPTT_FRAMES_DIR", str(tmp_path))

    def draw(scale, kind):
        fig, ax = plt.subplots(figsize=(4, 2.5))
        ax.plot([0, 1], [0, scale * (1 if kind == "up" else -1)])
        ax.set_ylabel("a label")
        return fig

    bv.sweep(draw, {"scale": [1, 1000, 1e6], "kind": ["up", "down"]}, caption="Caption " * 8,
             alt="A line that rises or falls.", fmt={"scale": "s = {:g}", "kind": "{}"}, start={"scale": 1})
    assert len(shown) == 1 and isinstance(shown[0], HTML)
    html = shown[0].data
    files = sorted(tmp_path.iterdir())
    assert len(files) == 6 and all(re_.fullmatch(r"[0-9a-f]{20}\.png", f.name) for f in files)
    sizes = set()
    for f in files:
        with Image.open(f) as image:
            sizes.add(image.size)
    assert sizes == {(4 * 2 * bv.FRAME_DPI, int(2.5 * 2 * bv.FRAME_DPI))}
    assert f'width="{4 * bv.FRAME_DPI}"' in html and "data:image" not in html
    assert re_.search(r'<img class="bptt-frame" src="_frames/[0-9a-f]{20}\.png"', html)
    assert 'type="range"' in html and 'aria-valuetext="s = 1000"' in html and "<label for=" in html
    assert html.count('type="radio"') == 2 and "<legend>kind</legend>" in html


def test_frames_html_names_bad_input(tmp_path):
    import bptt_viz as bv
    import pytest

    with pytest.raises(ValueError, match=r"frames: expected 2 frames for controls of sizes \[2\], got 1"):
        bv.frames_html([b"\x89PNG\r\n\x1a\n" + bytes(20)], [("a", ["1", "2"], 0)], caption="c",
                       frames_dir=tmp_path)
    with pytest.raises(ValueError, match=r"frames: expected PNG bytes, got b'GIF89a"):
        bv.frames_html([b"GIF89a..", b"GIF89a.."], [("a", ["1", "2"], 0)], caption="c", frames_dir=tmp_path)


def test_multi_panel_figures_become_separate_images_on_the_site(tmp_path, monkeypatch):
    """bv.show_panels: on the site, one image file per panel (with its own alt text) in a wrapping row;
    in the notebooks (STILL mode), the usual single image."""
    import matplotlib.pyplot as plt
    import pytest
    import bptt_viz as bv

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.extend(objs))
    monkeypatch.setenv("BPTT_STATIC_FRAMES", "1")

    def figure():
        fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
        left.plot([0, 1], [0, 1])
        right.semilogy([1, 10, 100])
        return fig

    with pytest.raises(ValueError, match=r"alts: expected 2 sentences, one per panel of the figure, got \['one'\]"):
        bv.show_panels(figure(), alts=["one"])
    fig = figure()
    bv.show_panels(fig, alts=["A rising line.", "A line on a log axis."])          # STILL: the figure itself
    assert shown == [fig]
    shown.clear()
    monkeypatch.setenv("BPTT_FRAMES_DIR", str(tmp_path))
    bv.show_panels(figure(), alts=["A rising line.", "A line on a log axis."])
    html = shown[0].data
    assert html.startswith('<div class="bptt-panels">') and html.count("<img") == 2
    assert 'alt="A rising line."' in html and 'alt="A line on a log axis."' in html
    assert len(list(tmp_path.iterdir())) == 2


def test_the_readme_core_in_one_screen_runs():
    """The README's "bptt_core in one screen" is code a reader copies: it must run as written (given two
    short sequences for the padding lines)."""
    import numpy as np

    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## `bptt_core` in one screen\n\n```python\n(.*?)```", readme, re.S).group(1)
    given = {"list_of_xs": [np.ones((5, 3)), np.ones((3, 3))], "list_of_ys": [np.zeros(5, int), np.zeros(3, int)]}
    namespace = dict(given)
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["res"].grads["W_hh"].shape == (8, 8) and namespace["mask"].shape == (5, 2)
