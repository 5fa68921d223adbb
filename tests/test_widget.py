"""The spectral-radius view: updates in place, stays finite and quiet at the extremes, and its live
(ipywidgets) and static (precomputed frames) forms both show it."""
import json
import warnings

import numpy as np
import pytest

import bptt_core as bc
import bptt_viz as bv


@pytest.fixture(scope="module")
def view():
    return bv.SpectralView()


def test_update_changes_data_not_the_figure(view):
    fig, artists, line = view.figure, list(view.figure.get_children()), view._line
    view.update(rho=0.7, T=200, activation="identity", kind="normal")
    first = view.png()
    view.update(rho=1.3, T=200, activation="identity", kind="normal")
    assert view.figure is fig and view._line is line and list(fig.get_children()) == artists
    assert view.png() != first


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


def test_bad_controls_are_named(view):
    with pytest.raises(ValueError, match=r"T: expected an integer in \[1, 1000\], got 0"):
        view.update(T=0)
    with pytest.raises(ValueError, match=r"kind: expected one of \['normal', 'non-normal'\], got 'skew'"):
        view.update(kind="skew")


def test_live_widget_redraws_the_image_when_a_slider_moves(view, monkeypatch):
    monkeypatch.setenv("BPTT_LIVE_WIDGETS", "1")
    box = bv.spectral_widget(view)
    sliders, image = box.children[:-1], box.children[-1]
    assert [s.description for s in sliders] == ["rho", "activation", "kind", "T"]
    before = image.value
    sliders[0].value = 1.5
    assert image.value != before and view.last["norms"][0] > 1e20
    sliders[3].value = 1000
    assert len(view.last["norms"]) == 1001


def test_static_widget_has_one_distinct_frame_per_setting(view, monkeypatch, capsys):
    monkeypatch.setenv("BPTT_LIVE_WIDGETS", "0")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs: shown.extend(objs))
    bv.spectral_widget(view)
    html = shown[0].data
    assert html.count('type="range"') == 3
    frames = json.loads(html.split("var frames = ")[1].split(";\n")[0])
    assert len(frames) == 11 * 2 * 2 and len(set(frames)) == len(frames)
