"""bptt_viz's widgets: the mode decision, the live and still forms of `sweep`, and the spectral-radius
view (correct per T, legends off the data, shown once). The browser side is tests/test_binder_reader.py."""
import base64
import io
import warnings

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

import bptt_core as bc
import bptt_viz as bv


@pytest.fixture(scope="module")
def view():
    return bv.SpectralView()


@pytest.fixture
def shown(monkeypatch):
    """Everything the code under test passes to IPython's display, in order."""
    out = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: out.extend(objs))
    return out


def pixels(png):
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


# ---- the mode decision -------------------------------------------------------------------------

@pytest.mark.parametrize("session", [None, "chapters/eigenvalues.ipynb"])
@pytest.mark.parametrize("env, expected", [
    ({}, "live"),
    ({"BPTT_STATIC_FRAMES": "0"}, "live"),
    ({"BPTT_STATIC_FRAMES": "1"}, "still"),
    ({"BPTT_STATIC_FRAMES": "1", "BPTT_FRAMES_DIR": "/tmp/frames"}, "site"),
    ({"BPTT_FRAMES_DIR": "/tmp/frames"}, "live"),
])
def test_mode_comes_from_the_build_variables_only(monkeypatch, env, expected, session):
    """JupyterLab's server sets JPY_SESSION_NAME, VS Code does not: the mode must not depend on it."""
    for name in ("BPTT_STATIC_FRAMES", "BPTT_FRAMES_DIR", "JPY_SESSION_NAME", "BPTT_LIVE_WIDGETS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if session:
        monkeypatch.setenv("JPY_SESSION_NAME", session)
    assert bv.mode() == expected
    assert bv.is_live() == (expected == "live")


# ---- sweep over a drawing function ---------------------------------------------------------------

class Counted:
    """A drawing function whose frames differ visibly with both controls; counts its calls."""
    def __init__(self):
        self.calls = []

    def __call__(self, a, b):
        self.calls.append((a, b))
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1], [0, a * b])
        ax.set_ylim(0, 10)
        return fig


def test_live_sweep_is_shown_once_and_every_slider_changes_the_image(monkeypatch, shown):
    monkeypatch.setattr(bv, "_idle_runner", lambda: None)      # no prefetch: count draws exactly
    draw = Counted()
    assert bv.sweep(draw, {"a": [1, 2, 3], "b": [1.0, 3.0]}, fmt={"a": "α = {}"}, start={"a": 1},
                    caption="Lines.", alt="A line.", mode="live") is None
    boxes = [o for o in shown if isinstance(o, widgets.Widget)]
    assert len(boxes) == 1 and len(shown) == 2                  # the widget, then its saved still
    box = boxes[0]
    assert "bptt-live" in box._dom_classes
    a, b, image = box.children[:3]
    assert (a.description, b.description) == ("α", "b")
    assert a.value == 2 and b.value == 1.0 and draw.calls == [(2, 1.0)]
    seen = {image.value}
    a.value = 3
    seen.add(image.value)
    b.value = 3.0
    seen.add(image.value)
    assert len(seen) == 3 and draw.calls == [(2, 1.0), (3, 1.0), (3, 3.0)]
    a.value = 2
    b.value = 1.0                                              # back to the start: from the cache
    assert draw.calls == [(2, 1.0), (3, 1.0), (3, 3.0), (2, 3.0)]
    still = shown[1].data
    assert 'class="bptt-saved-still"' in still and bv.RUN_LINE in still and 'alt="A line."' in still
    start_png = base64.b64decode(still.split("base64,")[1].split('"')[0])
    assert image.value == start_png                             # the saved still is the start frame


def test_live_sweep_prefetches_every_frame_once_when_idle(monkeypatch, shown):
    queue = []
    monkeypatch.setattr(bv, "_idle_runner", lambda: queue.append)
    monkeypatch.setitem(bv._touched, "widget", None)
    draw = Counted()
    bv.sweep(draw, {"a": [1, 2, 3], "b": [1.0, 3.0]}, caption="Lines.", mode="live")
    while queue:                                                 # the kernel goes idle
        queue.pop(0)()
    assert sorted(draw.calls) == sorted((a, b) for a in (1, 2, 3) for b in (1.0, 3.0))
    a, b = shown[0].children[:2]
    a.value, b.value = 3, 3.0
    assert len(draw.calls) == 6                                 # moves are served from the cache


def test_prefetch_waits_while_another_widget_is_in_use(monkeypatch, shown):
    queue = []
    monkeypatch.setattr(bv, "_idle_runner", lambda: queue.append)
    first, second = Counted(), Counted()
    bv.sweep(first, {"a": [1, 2, 3], "b": [1.0]}, caption="one", mode="live")
    bv.sweep(second, {"a": [1, 2, 3], "b": [1.0]}, caption="two", mode="live")
    shown[0].children[0].value = 2                      # the reader moves the first widget
    for _ in range(20):
        queue.pop(0)()
    assert len(second.calls) == 1 and len(first.calls) == 3   # only the first one prefetched
    monkeypatch.setitem(bv._touched, "at", -1e9)        # ... and stops using it
    while queue:
        queue.pop(0)()
    assert len(second.calls) == 3


def test_still_sweep_is_the_start_frame_and_one_line_without_controls(monkeypatch, shown):
    made = []
    monkeypatch.setattr(widgets.Widget, "open", lambda self: made.append(self))
    draw = Counted()
    bv.sweep(draw, {"a": [1, 2, 3], "b": [1.0, 3.0]}, start={"a": 2, "b": 1}, caption="Lines.",
             alt="A line.", mode="still")
    assert made == [] and draw.calls == [(3, 3.0)]
    png_out, text_out = shown
    assert set(png_out) == {"image/png", "text/plain"} and png_out["text/plain"] == "A line."
    still = pixels(base64.b64decode(png_out["image/png"]))
    assert still.shape[0] > 100
    assert text_out.data == f"Lines.\n\n*{bv.RUN_LINE}*"
    assert "Binder" not in text_out.data and "Binder" not in bv.RUN_LINE


def test_still_image_depends_on_the_start_values(shown):
    for start in ({"a": 0}, {"a": 2}):
        bv.sweep(Counted(), {"a": [1, 2, 3], "b": [1.0]}, start=start, caption="c", mode="still")
    assert shown[0]["image/png"] != shown[2]["image/png"]


@pytest.mark.parametrize("kwargs, message", [
    ({"controls": {}}, r"controls: expected a non-empty dict"),
    ({"controls": {"a": []}}, r"controls\['a'\]: expected at least one value, got none"),
    ({"controls": {"a": [1]}, "start": {"a": 1}}, r"start\['a'\]: expected an index into controls\['a'\], got 1"),
    ({"controls": {"a": [1]}, "start": {"z": 0}}, r"start\['z'\]: expected an index"),
    ({"controls": {"a": [1]}, "mode": "static"}, r"mode: expected 'live', 'still' or 'site', got 'static'"),
])
def test_sweep_bad_input_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bv.sweep(Counted(), caption="c", **kwargs)


# ---- the spectral-radius view ---------------------------------------------------------------------

def test_update_changes_data_not_the_figure(view):
    fig, artists, line = view.figure, list(view.figure.get_children()), view._line
    view.update(rho=0.7, T=200, activation="identity", kind="normal")
    first = view.png()
    view.update(rho=1.3, T=200, activation="identity", kind="normal")
    assert view.figure is fig and view._line is line and list(fig.get_children()) == artists
    assert view.png() != first


@pytest.mark.parametrize("T", [50, 200, 1000])
def test_the_image_depends_only_on_the_controls_whatever_was_drawn_before(view, T):
    """The issue's bug: x-limits were set only when a T's background was first cached."""
    fresh = bv.SpectralView()
    fresh.update(rho=1.1, T=T, activation="tanh", kind="non-normal")
    for other in (1000, 200, 50, T, 1000):                     # every T cached, the last one different
        view.update(rho=0.9, T=other)
    view.update(rho=1.1, T=T, activation="tanh", kind="non-normal")
    assert view._ax.get_xlim() == (0.0, float(T))
    assert view.png() == fresh.png()


def test_the_line_ends_at_the_right_edge_of_the_axis(view):
    view.update(rho=1.0, T=200)
    view.update(rho=1.0, T=1000)
    view.update(rho=1.0, T=200)
    x_last, y_last = view._ax.transData.transform((view._line.get_xdata()[-1], view._line.get_ydata()[-1]))
    right = view._ax.get_window_extent().x1
    assert abs(x_last - right) < 1.0


@pytest.mark.parametrize("rho", [1.3, 1.6, 2.0])
@pytest.mark.parametrize("kind", ["normal", "non-normal"])
def test_legends_never_cover_the_eigenvalues_or_the_curves(view, rho, kind):
    view.update(rho=rho, T=200, kind=kind)
    renderer = view.figure.canvas.get_renderer()
    dots = view._eig_dots.get_transform().transform(np.column_stack(view._eig_dots.get_data()))
    for legend in (view._ax.get_legend(), view.figure.axes[0].get_legend()):
        box = legend.get_window_extent(renderer)
        inside = (dots[:, 0] > box.x0) & (dots[:, 0] < box.x1) & (dots[:, 1] > box.y0) & (dots[:, 1] < box.y1)
        assert not inside.any()
        for ax in view.figure.axes:                             # legends sit outside both axes
            assert not box.overlaps(ax.get_window_extent(renderer))


def test_labels_are_mathtext_in_the_book_notation(view):
    view.update(rho=1.2, T=100)
    ax_eig, ax = view.figure.axes
    assert ax.get_ylabel() == r"$\|\mathrm{d}\ell/\mathrm{d}\mathbf{h}_t\|$"
    assert ax_eig.get_xlabel() == r"$\mathrm{Re}\,\lambda$"
    assert r"$\rho$ = 1.20" in view._title.get_text() and r"\mathbf{W}_{hh}" in view._title.get_text()
    texts = [t.get_text() for t in view.figure.findobj(lambda a: hasattr(a, "get_text"))]
    plain = [t.replace(r"\rho", "").replace(r"\mathbf{W}_{hh}", "") for t in texts]
    assert not any("rho" in t or "dh_t" in t or "W_{hh}" in t or "‖" in t for t in plain)


def test_drawn_line_is_the_core_gradient_profile(view):
    view.update(rho=0.8, T=100, activation="tanh", kind="non-normal")
    params = {"W_hx": view.W_hx, "W_hh": bc.recurrent_matrix(64, 0.8, kind="non-normal", coupling=2.5, seed=1),
              "W_qh": np.ones((1, 64))}
    expected = bc.gradient_profile(params, view.xs[:100], view.u, activation="tanh")
    np.testing.assert_allclose(view.last["norms"], expected, rtol=1e-8)
    x, y = view._line.get_data()
    np.testing.assert_array_equal(x, np.arange(101))
    inside = (expected > 1e-21) & (expected < 1e21)
    np.testing.assert_allclose(np.asarray(y)[inside], expected[inside], rtol=1e-8)
    eig = np.asarray(view._eig_dots.get_xdata()) + 1j * np.asarray(view._eig_dots.get_ydata())
    assert np.abs(eig).max() == pytest.approx(0.8, rel=1e-6)


def test_identity_with_normal_matrix_follows_rho_to_the_power(view):
    view.update(rho=1.1, T=150, activation="identity", kind="normal")
    np.testing.assert_allclose(view.last["norms"], 1.1 ** (150 - np.arange(151)), rtol=1e-9)


@pytest.mark.parametrize("kind", ["normal", "non-normal"])
@pytest.mark.parametrize("rho", [2.0, 2.6])
def test_extremes_draw_without_warnings_or_nan_and_say_overflow(view, rho, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        view.update(rho=rho, T=1000, activation="identity", kind=kind)
        png = view.png()
    y = np.asarray(view._line.get_ydata())
    assert np.isfinite(y).all() and len(y) == 1001 and png[:4] == b"\x89PNG"
    norms = view.last["norms"]
    assert not np.isnan(norms).any()
    if np.isinf(norms).any():
        assert view.last["overflow"] and "overflow" in view.last["note"]
        assert "overflow" in view._note.get_text()
    else:
        assert "off the axis" in view.last["note"]            # 2^1000 ≈ 1e301 is far above the axis
    if rho == 2.6:
        assert np.isinf(norms[0]) and "overflow" in view.last["note"]


@pytest.mark.parametrize("kwargs, message", [
    ({"T": 0}, r"T: expected an integer in \[1, 1000\], got 0"),
    ({"kind": "skew"}, r"kind: expected one of \['normal', 'non-normal'\], got 'skew'"),
    ({"rho": -1.0}, r"rho: expected a positive finite number, got -1.0"),
    ({"activation": "relu"}, r"activation: expected 'identity' or 'tanh', got 'relu'"),
])
def test_bad_controls_are_named(view, kwargs, message):
    with pytest.raises(ValueError, match=message):
        view.update(**kwargs)


def test_live_spectral_widget_is_shown_once_and_redraws(view, monkeypatch, shown):
    monkeypatch.delenv("BPTT_STATIC_FRAMES", raising=False)
    assert bv.spectral_widget(view) is None
    boxes = [o for o in shown if isinstance(o, widgets.Widget)]
    assert len(boxes) == 1 and len(shown) == 2
    sliders, image = boxes[0].children[:4], boxes[0].children[4]
    assert [s.description for s in sliders] == ["ρ", "activation", "kind", "T"]
    assert [s.value for s in sliders] == [1.0, "identity", "normal", 200]
    start = image.value
    sliders[0].value = 1.5
    assert image.value != start and view.last["norms"][0] > 1e20
    sliders[3].value = 1000
    assert len(view.last["norms"]) == 1001
    sliders[3].value = 200
    sliders[0].value = 1.0
    assert image.value == start                                 # the round trip gives the same image


def test_still_spectral_widget_is_the_start_frame(view, monkeypatch, shown):
    monkeypatch.setenv("BPTT_STATIC_FRAMES", "1")
    monkeypatch.delenv("BPTT_FRAMES_DIR", raising=False)
    bv.spectral_widget(view)
    assert len(shown) == 2 and bv.RUN_LINE in shown[1].data
    fresh = bv.SpectralView()
    fresh.update(rho=1.0, T=200, activation="identity", kind="normal")
    assert base64.b64decode(shown[0]["image/png"]) == fresh.png()


def test_min_text_px_is_the_smallest_visible_text_and_every_png_records_it(tmp_path, monkeypatch):
    """The legibility record the site test reads: 8 pt at 180 dpi is 20 px; a hidden or empty text does
    not count; sweep frames and the spectral view carry it in their PNG."""
    def draw(x=1):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, x])
        ax.tick_params(labelsize=11)
        ax.set_title("a title", fontsize=8)
        ax.set_xlabel("x", fontsize=12)
        ax.text(0, 0, "hidden", fontsize=4).set_visible(False)
        ax.text(0, 0, "  ", fontsize=3)
        return fig

    fig = draw()
    assert bv.min_text_px(fig, 180) == pytest.approx(8 * 180 / 72)
    assert bv.min_text_px(fig.axes[0], 72) == pytest.approx(8)
    plt.close(fig)
    empty = plt.figure()
    assert bv.min_text_px(empty, 100) is None
    plt.close(empty)
    with Image.open(io.BytesIO(bv._frame(draw, {"x": 2}))) as frame:
        assert float(frame.text[bv.TEXT_PX_KEY]) == pytest.approx(8 * bv.FRAME_SCALE * bv.FRAME_DPI / 72, abs=0.01)
    view = bv.SpectralView(h=8, d=2, T_max=20)
    view.update(rho=1.0, T=20)
    with Image.open(io.BytesIO(view.png())) as image:
        assert float(image.text[bv.TEXT_PX_KEY]) == pytest.approx(bv.min_text_px(view.figure, view.figure.dpi), abs=0.01)
