"""Figures and widgets for the book; the mathematics stays in bptt_core.

`sweep(draw, controls, ...)` is the one way a chapter shows a parameter sweep. It has three modes,
chosen by the environment alone (never guessed from the front end, see `mode()`):

- LIVE, the default in any kernel (JupyterLab, Notebook 7, VS Code, Binder): ipywidgets sliders that
  recompute, shown once;
- STILL (BPTT_STATIC_FRAMES=1): one still image and one line saying to run the cell for the live
  control; this is what the committed notebooks store and what nbval compares;
- SITE (BPTT_STATIC_FRAMES=1 and BPTT_FRAMES_DIR=<dir>, set by the book build): precomputed frames and
  a kernel-free HTML slider on the static site.
"""
from __future__ import annotations

import base64
import html
import io
import itertools
import json
import os
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, FancyArrowPatch, FancyBboxPatch
from matplotlib.ticker import LogLocator, NullLocator

import bptt_core as bc

_counter = itertools.count(1)


def mode():
    """"live", "still" or "site", from BPTT_STATIC_FRAMES and BPTT_FRAMES_DIR only (module doc)."""
    if os.environ.get("BPTT_STATIC_FRAMES") != "1":
        return "live"
    return "site" if os.environ.get("BPTT_FRAMES_DIR") else "still"


def is_live():
    """True unless the build or the tests asked for static output (BPTT_STATIC_FRAMES=1)."""
    return mode() == "live"


FRAME_DPI = 90          # a site frame's display size: its figure size at this many pixels per inch
FRAME_SCALE = 2         # rendered at twice that, so that it is sharp on a 2x (phone, retina) screen


TEXT_PX_KEY = "bptt-min-text-px"   # PNG text chunk: the smallest font size in the image, in its pixels


def min_text_px(artist, dpi):
    """The smallest nominal font size of the visible, non-empty text of a figure or an axes (tick
    labels, labels, titles, legends, annotations), in pixels of an image drawn at `dpi`; None if it
    has no text. Sub- and superscripts in formulas are set smaller, as in print, and are not counted."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in artist.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes) * dpi / 72 if sizes else None


def _png_text(min_px):
    """A PNG text chunk recording `min_px` (see `min_text_px`), which the site's browser test reads to
    check that figure text is legible as displayed (0 when the figure has no text)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(TEXT_PX_KEY, f"{min_px or 0:.2f}")
    return info


def png_base64(fig, dpi=FRAME_SCALE * FRAME_DPI):
    """The figure as base64 PNG text at its own size (not cropped, so all frames of a sweep have the
    same size), rendered at 2x; the figure is closed."""
    return base64.b64encode(_live_png(lambda: fig, {}, dpi=dpi)).decode("ascii")


def _png_size(png):
    """(width, height) in pixels, read from the PNG header."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"frames: expected PNG bytes, got {png[:8]!r}")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _frames_folder(frames_dir):
    from pathlib import Path

    folder = frames_dir or os.environ.get("BPTT_FRAMES_DIR")
    if not folder:
        raise ValueError("frames_dir: expected a folder (or $BPTT_FRAMES_DIR), got none")
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


def _write_frame(folder, png):
    """Write PNG bytes under a content-hash name (once) and return the name."""
    import hashlib

    _png_size(png)
    name = hashlib.sha256(png).hexdigest()[:20] + ".png"
    if not (folder / name).exists():
        (folder / name).write_bytes(png)
    return name


def frames_html(frames, controls, *, caption, alt=None, frames_dir=None, scale=FRAME_SCALE):
    """SITE mode: a kernel-free view over precomputed frames, for the static site.

    `frames`: PNG bytes, in row-major order over `controls`, a list of (name, labels, start index).
    Each frame is written to `frames_dir` (default: $BPTT_FRAMES_DIR, which the book build publishes as
    `_frames/` at the site root) under a content-hash name, and referred to by URL, so a browser caches
    it and only the frames a reader asks for are loaded. `scale`: pixels per displayed CSS pixel.
    Controls with two options are radio buttons, the others sliders whose value text is the label
    ("ρ = 0.95"); the site's script (_ext/static/bptt-site.js) swaps the frames.
    """
    import hashlib

    esc = html.escape
    folder = _frames_folder(frames_dir)
    sizes = [len(labels) for _, labels, _ in controls]
    if len(frames) != int(np.prod(sizes)):
        raise ValueError(f"frames: expected {int(np.prod(sizes))} frames for controls of sizes {sizes}, "
                         f"got {len(frames)}")
    names = [_write_frame(folder, png) for png in frames]
    strides = [int(np.prod(sizes[i + 1:])) for i in range(len(sizes))]
    first = sum(s * start for s, (_, _, start) in zip(strides, controls))
    width, height = _png_size(frames[first])
    uid = "bptt-sweep-" + hashlib.sha256("".join(names).encode()).hexdigest()[:10]
    rows = []
    for k, (name, labels, start) in enumerate(controls):
        label = _description(name, labels[0])
        data = esc(json.dumps(labels), quote=True)
        if len(labels) == 2:
            options = "".join(
                f'<label><input type="radio" name="{uid}-{k}" value="{i}"{" checked" if i == start else ""}>'
                f" {esc(text)}</label>" for i, text in enumerate(labels))
            rows.append(f'<fieldset class="bptt-control" data-labels="{data}"><legend>{esc(label)}</legend>'
                        f"{options}</fieldset>")
        else:
            rows.append(
                f'<div class="bptt-control" data-labels="{data}"><label for="{uid}-{k}">{esc(label)}</label>'
                f'<input id="{uid}-{k}" type="range" min="0" max="{len(labels) - 1}" step="1" value="{start}" '
                f'aria-valuetext="{esc(labels[start])}">'
                f'<output for="{uid}-{k}" aria-hidden="true">{esc(labels[start])}</output></div>')
    return (f'<figure class="bptt-sweep" id="{uid}" data-frames="{esc(json.dumps(names), quote=True)}" '
            f'data-strides="{esc(json.dumps(strides), quote=True)}">\n'
            f'<img class="bptt-frame" src="_frames/{names[first]}" width="{round(width / scale)}" '
            f'height="{round(height / scale)}" alt="{esc(alt or caption)}">\n'
            + "\n".join(rows) +
            f'\n<figcaption><span class="bptt-caption-text">{esc(caption)}</span> <em>Precomputed frames: '
            f"open this page in Binder (rocket button above) for the live version.</em></figcaption>\n</figure>")


def sweep(draw, controls, *, caption, alt=None, fmt=None, start=None, mode=None):
    """Show a figure over a grid of values, one slider per control. Returns None: a cell that ends
    with the call shows the figure once.

    `draw` is either a function returning a new matplotlib Figure for `draw(**values)`, or a view: an
    object with `update(**values)` (which changes the data of one persistent figure) and `png()`.
    `controls`: {argument name: list of values}; `fmt`: {name: format string} for the labels;
    `start`: {name: index} of the first frame shown; `alt`: a sentence saying what the figure shows.
    `mode`: "live", "still" or "site"; by default `mode()` decides (see the module doc).
    """
    from IPython.display import HTML, display

    if not isinstance(controls, dict) or not controls:
        raise ValueError(f"controls: expected a non-empty dict {{name: list of values}}, got {controls!r}")
    names = list(controls)
    values = {n: list(controls[n]) for n in names}
    for n in names:
        if not values[n]:
            raise ValueError(f"controls['{n}']: expected at least one value, got none")
    fmt, start = fmt or {}, start or {}
    labels = {n: [fmt.get(n, n + " = {}").format(v) for v in values[n]] for n in names}
    for n, i in start.items():
        if n not in values or isinstance(i, bool) or not isinstance(i, (int, np.integer)) \
                or not 0 <= i < len(values[n]):
            raise ValueError(f"start[{n!r}]: expected an index into controls[{n!r}], got {i!r}")
    first = {n: values[n][start.get(n, 0)] for n in names}
    chosen = globals()["mode"]() if mode is None else mode
    if chosen not in ("live", "still", "site"):
        raise ValueError(f"mode: expected 'live', 'still' or 'site', got {mode!r}")
    if chosen == "live":
        _live_sweep(draw, names, values, labels, first, caption, alt)
        return None
    if chosen == "still":
        _still(draw, first, caption, alt)
        return None
    dpi = getattr(getattr(draw, "figure", None), "dpi", None)
    if hasattr(draw, "set_dpi"):                   # a view: drawn at 2x for the frames, then as before
        draw.set_dpi(FRAME_SCALE * FRAME_DPI)
    try:
        frames = [_frame(draw, dict(zip(names, combo)))
                  for combo in itertools.product(*(values[n] for n in names))]
        scale = (draw.figure.dpi / FRAME_DPI if hasattr(draw, "figure") else 1) \
            if hasattr(draw, "update") else FRAME_SCALE
    finally:
        if hasattr(draw, "set_dpi") and dpi:
            draw.set_dpi(dpi)
    controls_view = [(n, labels[n], start.get(n, 0)) for n in names]
    display(HTML(frames_html(frames, controls_view, caption=caption, alt=alt, scale=scale)))
    return None


def _frame(draw, values):
    """One SITE frame as PNG bytes: a function's figure at 2x its display size (a fixed size: frames
    do not jump); a view as its own png() draws it."""
    if hasattr(draw, "update"):
        draw.update(**values)
        return draw.png()
    return _live_png(draw, values, dpi=FRAME_SCALE * FRAME_DPI)


def show_panels(fig, *, alts, pad=0.08):
    """Show a figure of several side-by-side panels so that a phone stacks them instead of shrinking
    the whole row to a third of its width. Returns None.

    In Jupyter and in the committed notebooks (LIVE and STILL modes) the figure is shown as usual, one
    image. On the static site (SITE mode) each panel (an axes with its ticks, labels, title and legend,
    cut from a 2x rendering) is a separate image file in a wrapping row: side by side where they fit,
    one under the other on a phone, each at its own legible size. The cell's caption and label
    (mystnb.figure) still apply. `alts`: one sentence per panel saying what it shows, in the order of
    `fig.axes`. Figure-level artists (fig.legend, fig.suptitle, fig.text) belong to no panel and are
    left out on the site: use ax.legend and ax.set_title in such figures.
    """
    from IPython.display import HTML, display

    panels = [ax for ax in fig.axes if ax.get_visible()]
    if isinstance(alts, str) or len(alts) != len(panels) or not all(isinstance(a, str) and a.strip() for a in alts):
        raise ValueError(f"alts: expected {len(panels)} sentences, one per panel of the figure, got {alts!r}")
    if mode() != "site":
        display(fig)
        plt.close(fig)
        return None
    from PIL import Image

    try:
        if fig.get_layout_engine() is None:
            fig.set_layout_engine("tight")
        fig.set_dpi(FRAME_SCALE * FRAME_DPI)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        whole = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
        boxes = [ax.get_tightbbox(renderer) for ax in panels]
        text_px = [min_text_px(ax, fig.dpi) for ax in panels]
    finally:
        plt.close(fig)
    margin, height = pad * fig.dpi, whole.height
    images = []
    for box, px in zip(boxes, text_px):
        crop = whole.crop((max(0, int(box.x0 - margin)), max(0, int(height - box.y1 - margin)),
                           min(whole.width, int(box.x1 + margin + 1)), min(height, int(height - box.y0 + margin + 1))))
        buf = io.BytesIO()
        crop.quantize(256, method=Image.Quantize.FASTOCTREE).save(buf, "png", pnginfo=_png_text(px))
        images.append(buf.getvalue())
    folder = _frames_folder(None)
    tags = []
    for png, alt in zip(images, alts):
        name, (w, h) = _write_frame(folder, png), _png_size(png)
        tags.append(f'<img class="bptt-panel" src="_frames/{name}" width="{round(w / FRAME_SCALE)}" '
                    f'height="{round(h / FRAME_SCALE)}" alt="{html.escape(alt)}">')
    display(HTML('<div class="bptt-panels">' + "".join(tags) + "</div>"))
    return None


RUN_LINE = "Still image. Run this cell for the live control."

# In JupyterLab and Notebook 7, a live widget whose notebook was saved (autosave) and reopened without
# its kernel cannot render ("Error displaying widget: model not found"). Each live widget is therefore
# followed by a saved still: hidden while the live widget shows, shown (and the dead widget view hidden)
# once the live widget is gone. Elsewhere (VS Code, untrusted HTML) the still stays hidden.
_SAVED_STILL_CSS = """<style>
.bptt-saved-still { display: none; }
.jp-OutputArea-child:not(:has(.bptt-live)):has(+ .jp-OutputArea-child .bptt-saved-still) { display: none; }
.jp-OutputArea-child:not(:has(.bptt-live)) + .jp-OutputArea-child .bptt-saved-still { display: block; }
</style>"""


def _live_png(draw, values, dpi=100):
    """One frame as PNG bytes, for the live and still forms: a fixed figure size (frames do not jump),
    tight layout, a 64-colour palette (about 3× smaller than full colour, same look for line plots)."""
    if hasattr(draw, "update"):
        draw.update(**values)
        return draw.png()
    from PIL import Image

    fig = draw(**values)
    try:
        if fig.get_layout_engine() is None:
            fig.set_layout_engine("tight")
        fig.set_dpi(dpi)
        fig.canvas.draw()
        image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
        text_px = min_text_px(fig, dpi)
    finally:
        plt.close(fig)
    buf = io.BytesIO()
    image.quantize(64, method=Image.Quantize.FASTOCTREE).save(buf, "png", pnginfo=_png_text(text_px))
    return buf.getvalue()


def _still(draw, first, caption, alt):
    """STILL mode: the start frame as an image/png output (shown even in an untrusted notebook) and one
    line of text; nothing that looks like a control."""
    from IPython.display import Markdown, display

    png = _live_png(draw, first)
    display({"image/png": base64.b64encode(png).decode("ascii"), "text/plain": alt or caption}, raw=True)
    display(Markdown(f"{caption}\n\n*{RUN_LINE}*"))


def _idle_runner(delay=0.02):
    """A function that runs a callback when the kernel is idle (between messages), or None."""
    try:
        from IPython import get_ipython

        loop = get_ipython().kernel.io_loop
    except AttributeError:
        return None
    return lambda fn, after=delay: loop.call_later(after, fn)


_touched = {"widget": None, "at": -1e9}        # the live widget a reader moved last, and when


def _live_sweep(draw, names, values, labels, first, caption, alt):
    """ipywidgets sliders over an Image widget. A view is redrawn in place on every move; a function's
    frames are rendered once and cached as PNG bytes, the rest prefetched while the kernel is idle."""
    import ipywidgets as widgets
    from IPython.display import HTML, display

    index = {n: {v: i for i, v in enumerate(values[n])} for n in names}
    # One description width for all the sliders of a widget, so that their tracks line up.
    label_width = f"{max(len(_description(n, labels[n][0])) for n in names) * 0.6 + 0.5:.1f}em"
    sliders = [widgets.SelectionSlider(options=list(zip(labels[n], values[n])), value=first[n],
                                       description=_description(n, labels[n][0]), continuous_update=True,
                                       style={"description_width": label_width},
                                       layout=widgets.Layout(width="34em"))
               for n in names]
    cache = {}

    def png(chosen):
        if hasattr(draw, "update"):                # a view: cheap to redraw, nothing to cache
            return _live_png(draw, chosen)
        key = tuple(index[n][chosen[n]] for n in names)
        if key not in cache:
            cache[key] = _live_png(draw, chosen)
        return cache[key]

    start_png = png(first)
    image = widgets.Image(value=start_png, format="png",          # natural size, never stretched
                          layout=widgets.Layout(max_width="100%", align_self="flex-start"))

    def show(change=None):
        _touched.update(widget=id(sliders), at=time.monotonic())
        image.value = png({n: s.value for n, s in zip(names, sliders)})

    for s in sliders:
        s.observe(show, names="value")
    # HTMLMath: the caption's $...$ typeset by the front end's MathJax, not shown as TeX source.
    box = widgets.VBox([*sliders, image, widgets.HTMLMath(f"<p>{html.escape(caption)}</p>")])
    box.add_class("bptt-live")
    display(box)
    b64 = base64.b64encode(start_png).decode("ascii")
    display(HTML(f'{_SAVED_STILL_CSS}<div class="bptt-saved-still"><img src="data:image/png;base64,{b64}" '
                 f'alt="{html.escape(alt or caption)}" style="max-width:100%"><p>{html.escape(caption)}</p>'
                 f'<p><em>{RUN_LINE}</em></p></div>'))
    run_idle = None if hasattr(draw, "update") else _idle_runner()
    if run_idle is not None:      # prefetch every frame, one per idle moment, nearest to the sliders first
        todo = set(itertools.product(*(range(len(values[n])) for n in names)))

        def loop_later(seconds, fn):
            try:
                run_idle(fn, seconds)
            except TypeError:                      # a runner without a delay argument (tests)
                run_idle(fn)

        def prefetch():
            todo.difference_update(cache)
            if _touched["widget"] not in (None, id(sliders)) and time.monotonic() - _touched["at"] < 3.0:
                loop_later(0.5, prefetch)          # another widget is in use: leave the kernel to it
                return
            if todo:
                here = [index[n][s.value] for n, s in zip(names, sliders)]
                combo = min(todo, key=lambda c: (sum(abs(a - b) for a, b in zip(c, here)), c))
                png({n: values[n][i] for n, i in zip(names, combo)})
                run_idle(prefetch)
        run_idle(prefetch)


def _description(name, label):
    """The slider's name as its labels write it: "ρ" for labels like "ρ = 0.95", else the argument."""
    head, sep, _ = label.partition(" = ")
    return head if sep and head else name


# --------------------------------------------------------------------------------------------
# The spectral-radius view (chapter "Eigenvalue analysis").
# --------------------------------------------------------------------------------------------

class SpectralView:
    """Eigenvalues of W_hh in the complex plane and ‖dℓ/dh_t‖ against t (log axis), for a loss at the
    last step with ‖dℓ/dh_T‖ = 1 (`bptt_core.gradient_profile`).

    One persistent figure. `update` recomputes, sets the data of the few artists that change and draws
    only those over a cached background (axes, ticks, labels: drawn once per T); nothing is rebuilt.
    The x-limits are set for every update, so the image depends only on the controls: the same
    controls give the same PNG whatever was drawn before.
    W_hh = ρ·`bptt_core.recurrent_matrix(h, 1, kind=...)`: "normal" (ρ times an orthogonal matrix) or
    "non-normal" (the same eigenvalues plus a strictly upper block-triangular coupling).
    """

    YLIM = (1e-20, 1e20)

    def __init__(self, h=64, d=8, T_max=1000, coupling=2.5, input_scale=0.5, seed=0, dpi=90):
        rng = np.random.default_rng(seed)
        self.T_max = T_max
        self.xs = input_scale * rng.normal(size=(T_max, d))
        self.W_hx = rng.normal(0.0, 1.0 / np.sqrt(d), (h, d))
        self.u = rng.normal(size=h)
        self.u /= np.linalg.norm(self.u)
        self.base = {k: bc.recurrent_matrix(h, 1.0, kind=k, coupling=coupling, seed=seed + 1)
                     for k in ("normal", "non-normal")}
        self.eigs = {k: np.linalg.eigvals(W) for k, W in self.base.items()}
        # Stacked, 4.8 in wide: on a phone (a column of about 360 px) the text stays near 10 px.
        fig = Figure(figsize=(4.8, 5.4), dpi=dpi)      # not pyplot's: no automatic display or closing
        FigureCanvasAgg(fig)
        grid = fig.add_gridspec(2, 2, height_ratios=(1, 1.1), width_ratios=(1, 1.05),
                                left=0.17, right=0.97, bottom=0.09, top=0.97, hspace=0.3, wspace=0.1)
        ax_eig, ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, :])
        angle = np.linspace(0.0, 2 * np.pi, 200)
        ax_eig.plot(np.cos(angle), np.sin(angle), color="0.5", lw=0.8, label="unit circle")
        ax_eig.set(xlim=(-2.1, 2.1), ylim=(-2.1, 2.1), aspect="equal",
                   xlabel=r"$\mathrm{Re}\,\lambda$", ylabel=r"$\mathrm{Im}\,\lambda$")
        ax.set(yscale="log", ylim=self.YLIM, xlabel=r"$t$", ylabel=r"$\|\mathrm{d}\ell/\mathrm{d}\mathbf{h}_t\|$")
        ax.yaxis.set_major_locator(LogLocator(base=1e5, numticks=10))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.axhline(1.0, color="0.85", lw=0.6, zorder=0)
        self._changing = [
            ax_eig.plot([], [], ".", ms=4, color="C0", label=r"$\lambda_i(\mathbf{W}_{hh})$")[0],
            ax.plot([], [], color="C3", lw=1.4, label=r"$\|\mathrm{d}\ell/\mathrm{d}\mathbf{h}_t\|$")[0],
            ax.plot([], [], "--", color="0.4", lw=1.0, label=r"$\rho^{T-t}$")[0],
            ax.text(0.02, 0.04, "", transform=ax.transAxes, fontsize=9, color="C3"),
            fig.text(0.60, 0.95, "", ha="left", va="top", fontsize=10, linespacing=1.5),
        ]
        self._eig_dots, self._line, self._guide, self._note, self._title = self._changing
        for artist in self._changing:
            artist.set_animated(True)              # left out of full draws; drawn by update
        # The legends stand beside the eigenvalue plane, under the title, never over the data (for
        # ρ ≥ 1.3 the eigenvalues fill the plane's corners).
        ax_eig.legend(loc="upper left", bbox_to_anchor=(0.59, 0.80), bbox_transform=fig.transFigure,
                      fontsize=10, frameon=False, handlelength=1.4, borderaxespad=0.0)
        ax.legend(handles=self._changing[1:3], loc="upper left", bbox_to_anchor=(0.59, 0.68),
                  bbox_transform=fig.transFigure, fontsize=10, frameon=False, borderaxespad=0.0)
        self.figure, self._ax, self._backgrounds, self.last = fig, ax, {}, None

    def _background(self, T):
        """The figure without the changing artists, for this T's x-axis (cached). Sets the x-limits to
        (0, T) in every call: the changing artists are drawn with the current limits."""
        self._ax.set_xlim(0, T)
        if T not in self._backgrounds:
            self.figure.canvas.draw()
            self._backgrounds[T] = self.figure.canvas.copy_from_bbox(self.figure.bbox)
        return self._backgrounds[T]

    def update(self, rho=1.0, T=200, activation="identity", kind="normal"):
        """Recompute for these controls and redraw in place; `self.last` keeps the numbers drawn."""
        if isinstance(rho, bool) or not isinstance(rho, (int, float, np.integer, np.floating)) \
                or not 0 < rho < np.inf:
            raise ValueError(f"rho: expected a positive finite number, got {rho!r}")
        if activation not in ("identity", "tanh"):
            raise ValueError(f"activation: expected 'identity' or 'tanh', got {activation!r}")
        if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or not 1 <= T <= self.T_max:
            raise ValueError(f"T: expected an integer in [1, {self.T_max}], got {T!r}")
        if kind not in self.base:
            raise ValueError(f"kind: expected one of {list(self.base)}, got {kind!r}")
        params = {"W_hx": self.W_hx, "W_hh": rho * self.base[kind], "W_qh": np.eye(1, len(self.u))}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", bc.BPTTOverflowWarning)
            norms = bc.gradient_profile(params, self.xs[:T], self.u, activation=activation)
        overflowed = ~np.isfinite(norms)
        t = np.arange(T + 1)
        lo, hi = self.YLIM
        self._line.set_data(t, np.clip(norms, lo / 10, hi * 10))       # off the axis, never inf or NaN
        with np.errstate(under="ignore", over="ignore"):
            self._guide.set_data(t, np.clip(rho ** (T - t.astype(float)), lo / 10, hi * 10))
        eig = rho * self.eigs[kind]
        self._eig_dots.set_data(eig.real, eig.imag)
        self._title.set_text(rf"$\rho$ = {rho:.2f}, $T$ = {T}" "\n" rf"{kind} $\mathbf{{W}}_{{hh}}$, {activation}")
        if overflowed.any():
            note = (rf"overflow: $\|\mathrm{{d}}\ell/\mathrm{{d}}\mathbf{{h}}_t\|$ > {np.finfo(float).max:.1e} "
                    rf"for $t \leq$ {int(np.flatnonzero(overflowed).max())}")
        elif not lo <= norms[0] <= hi:
            note = rf"$\|\mathrm{{d}}\ell/\mathrm{{d}}\mathbf{{h}}_0\|$ = {norms[0]:.1e}, off the axis"
        else:
            note = ""
        self._note.set_text(note)
        canvas = self.figure.canvas
        canvas.restore_region(self._background(T))
        for artist in self._changing:
            self.figure.draw_artist(artist)
        self.last = {"norms": norms, "overflow": bool(overflowed.any() or caught), "note": note}
        return self

    def set_dpi(self, dpi):
        """Draw at `dpi` pixels per inch from the next update on (the static site's frames are 2x)."""
        self.figure.set_dpi(dpi)
        self._backgrounds.clear()                  # cached at the old size
        return self

    def png(self):
        """The figure as drawn by the last update, as PNG bytes (the figure stays open)."""
        from PIL import Image

        buf = io.BytesIO()
        image = Image.fromarray(np.asarray(self.figure.canvas.buffer_rgba())).convert("RGB")
        image.quantize(64, method=Image.Quantize.FASTOCTREE).save(         # a palette: 3× smaller
            buf, "png", pnginfo=_png_text(min_text_px(self.figure, self.figure.dpi)))
        return buf.getvalue()


# --------------------------------------------------------------------------------------------
# The unrolled computational graph (chapter "The unrolled RNN").
# --------------------------------------------------------------------------------------------

PARAM_COLOR, VAR_COLOR, OP_COLOR, DIM = "#c9d7ee", "white", "#fbe3c4", 0.18


def unrolled_graph(T):
    """Nodes of the unrolled RNN for T steps: name -> (kind, (x, y), parents).

    kind: "var" (a variable), "param" (a parameter, one drawn copy per use), "op" (an operator).
    Parameter copies are named "W_hx@t" etc.; they are all the same matrix.
    """
    g = {"h_0": ("var", (0.0, 2.0), [])}
    for t in range(1, T + 1):
        x = 3.0 * t
        g[f"x_{t}"] = ("var", (x, -0.2), [])
        g[f"W_hx@{t}"] = ("param", (x + 1.0, 0.3), [])
        g[f"W_hh@{t}"] = ("param", (x - 1.4, 2.0), [])
        g[f"phi_{t}"] = ("op", (x, 1.0), [f"x_{t}", f"W_hx@{t}", f"W_hh@{t}", f"h_{t - 1}"])
        g[f"h_{t}"] = ("var", (x, 2.0), [f"phi_{t}"])
        g[f"W_qh@{t}"] = ("param", (x + 1.0, 2.6), [])
        g[f"mul_{t}"] = ("op", (x, 3.0), [f"h_{t}", f"W_qh@{t}"])
        g[f"o_{t}"] = ("var", (x, 4.0), [f"mul_{t}"])
        g[f"y_{t}"] = ("var", (x + 1.0, 4.6), [])
        g[f"ell_{t}"] = ("op", (x, 5.0), [f"o_{t}", f"y_{t}"])
        g[f"l_{t}"] = ("var", (x, 6.0), [f"ell_{t}"])
    g["mean"] = ("op", (1.5 * (T + 1), 7.0), [f"l_{t}" for t in range(1, T + 1)])
    g["L"] = ("var", (1.5 * (T + 1), 8.0), ["mean"])
    return g


def ancestors(graph, node):
    """Every node that `node` depends on, itself included."""
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(graph[n][2])
    return seen


def _label(name):
    """The node's label in the book's notation: vectors and matrices bold, scalars plain."""
    sym = {"phi": r"$\phi$", "mul": r"$\times$", "ell": r"$\ell$", "mean": r"mean"}
    base, _, step = name.partition("_") if "@" not in name else (name.split("@")[0], "", "")
    if name.startswith("W_"):
        return {"W_hx": r"$\mathbf{W}_{hx}$", "W_hh": r"$\mathbf{W}_{hh}$",
                "W_qh": r"$\mathbf{W}_{qh}$"}[name.split("@")[0]]
    if base in sym:
        return sym[base]
    if base in ("h", "x", "o"):
        return rf"$\mathbf{{{base}}}_{{{step}}}$"
    if base == "l":
        return rf"$\ell_{{{step}}}$"
    return rf"${base}_{{{step}}}$" if step else f"${name}$"


def draw_unrolled_graph(T=3, highlight=None, ax=None):
    """Boxes for variables (white) and parameters (shaded), circles for operators, arrows for data flow.

    `highlight`: a node name; everything it depends on stays opaque and the rest fades.
    """
    g = unrolled_graph(T)
    keep = ancestors(g, highlight) if highlight else set(g)
    if ax is None:
        _, ax = plt.subplots(figsize=(2.0 * T + 1.6, 6.0))
    for name, (kind, (x, y), parents) in g.items():
        alpha = 1.0 if name in keep else DIM
        for p in parents:
            px, py = g[p][1]
            ax.add_patch(FancyArrowPatch((px, py), (x, y), arrowstyle="-|>", mutation_scale=10,
                                         shrinkA=13, shrinkB=13, color="0.3", alpha=alpha, lw=1.0))
        if kind == "op":                          # a circle; wide enough for a word ("mean")
            wide = not _label(name).startswith("$")
            ax.add_patch(Ellipse((x, y), 1.3 if wide else 0.6, 0.6, fc=OP_COLOR, ec="0.2", alpha=alpha, lw=1.0))
        else:
            w = 0.8 if kind == "param" else 0.6
            ax.add_patch(FancyBboxPatch((x - w / 2, y - 0.25), w, 0.5, boxstyle="round,pad=0.02",
                                        fc=PARAM_COLOR if kind == "param" else VAR_COLOR, ec="0.2",
                                        alpha=alpha, lw=1.0))
        ax.text(x, y, _label(name), ha="center", va="center", fontsize=11, alpha=max(alpha, 0.3))
    ax.set_xlim(-0.6, 3.0 * T + 1.6)
    ax.set_ylim(-0.7, 8.5)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax.figure


def spectral_widget(view=None):
    """The book's signature view (chapter "Eigenvalue analysis"): ρ, activation and kind of W_hh as
    sliders; live, T too (and ρ up to 2). On the static site T is 200 and ρ runs over 0.5..1.5.
    Returns None (the widget is shown once)."""
    chosen = mode()
    view = view or SpectralView()
    live = chosen == "live"
    rhos = [float(r) for r in np.round(np.linspace(0.5, 2.0, 31) if live else np.linspace(0.5, 1.5, 11), 2)]
    controls = {"rho": rhos, "activation": ["identity", "tanh"], "kind": ["normal", "non-normal"]}
    if live:
        controls["T"] = [50, 100, 200, 500, 1000]
    sweep(view, controls, mode=chosen,
          fmt={"rho": "ρ = {:.2f}", "activation": "{}", "kind": "{}", "T": "T = {}"},
          start={"rho": rhos.index(1.0), "T": 2} if live else {"rho": rhos.index(1.0)},
          alt='Top: the eigenvalues of the recurrent matrix as dots around the unit circle. Bottom: on a log scale, the norm of the gradient that a loss at the last step sends back to each earlier state, with a dashed line for rho to the power T minus t beside it.',
          caption='The eigenvalues of $\\mathbf{W}_{hh}$ (top) and the norm of the gradient that a loss at the last step sends back to $\\mathbf{h}_t$ (bottom, log scale). Drag $\\rho$ across 1: the red line tilts from vanishing (it falls to the left) to exploding (it rises to the left). The dashed line is $\\rho^{T-t}$, what the eigenvalues alone predict; compare it with the non-normal matrix and with tanh.')
    return None


def _site_figures_at_2x():
    """SITE mode (the book build): every figure a chapter shows is stored at 2x with its 1x size as
    metadata (IPython's "retina" format), so the static site shows it sharp at the usual size, and
    with its smallest font size recorded in the PNG (`min_text_px`) for the legibility test.
    The committed notebooks (STILL mode) keep the default format."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import retina_figure
        import matplotlib_inline.backend_inline  # noqa: F401  (sets its own formats on import: first)
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def retina_with_text_size(fig):
        return retina_figure(fig, base64=True, bbox_inches="tight",
                             metadata={TEXT_PX_KEY: f"{min_text_px(fig, 2 * fig.dpi) or 0:.2f}"})

    shell.display_formatter.formatters["image/png"].for_type(Figure, retina_with_text_size)


if mode() == "site":
    _site_figures_at_2x()
