"""Figures and widgets for the book; the mathematics stays in bptt_core.

`sweep(draw, values, ...)` is the one way a chapter shows a parameter sweep:

- on the static site (and whenever no Jupyter server runs the kernel, e.g. during the book build),
  every frame is drawn in advance and a plain HTML slider scrubs through them: no kernel needed;
- in a live Jupyter session (JupyterLab, Binder), an ipywidgets slider redraws on demand.

A Jupyter server announces itself to the kernel with the JPY_SESSION_NAME variable; BPTT_LIVE_WIDGETS=0
or 1 overrides the choice.
"""
from __future__ import annotations

import base64
import html
import io
import itertools
import json
import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
from matplotlib.ticker import LogLocator, NullLocator

import bptt_core as bc

_counter = itertools.count(1)


def is_live():
    """True in a kernel started by a Jupyter server (where ipywidgets can talk back)."""
    if os.environ.get("BPTT_STATIC_FRAMES") == "1":
        return False
    forced = os.environ.get("BPTT_LIVE_WIDGETS")
    if forced in ("0", "1"):
        return forced == "1"
    return bool(os.environ.get("JPY_SESSION_NAME"))


def png_base64(fig, dpi=80):
    """The figure as base64 PNG text; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def frames_html(frames, controls, *, caption, alt=None):
    """A kernel-free view: one HTML slider per control over precomputed PNG frames (base64).

    `controls` is a list of (name, labels, start index); `frames` is in row-major order over them.
    """
    uid = f"bptt-sweep-{next(_counter)}"
    esc = html.escape
    sizes = [len(labels) for _, labels, _ in controls]
    strides = [int(np.prod(sizes[i + 1:])) for i in range(len(sizes))]
    first = sum(s * start for s, (_, _, start) in zip(strides, controls))
    rows = "".join(f"""<div style="display:flex;align-items:center;gap:0.8em;max-width:36em">
<label for="{uid}-{k}" style="white-space:nowrap;min-width:7em">{esc(name)}</label>
<input id="{uid}-{k}" type="range" min="0" max="{len(labels) - 1}" step="1" value="{start}" style="flex:1"
 aria-label="{esc(name)}"><output style="min-width:5em">{esc(labels[start])}</output></div>
""" for k, (name, labels, start) in enumerate(controls))
    return f"""<figure class="bptt-sweep" id="{uid}" style="margin:1em 0">
<img src="data:image/png;base64,{frames[first]}" alt="{esc(alt or caption)}" style="max-width:100%">
{rows}<figcaption>{esc(caption)} <em>Precomputed frames: open this page in Binder (rocket button above)
for the live version.</em></figcaption>
<script>
(function () {{
  var frames = {json.dumps(frames)};
  var labels = {json.dumps([labels for _, labels, _ in controls])};
  var strides = {json.dumps(strides)};
  var root = document.getElementById("{uid}");
  var img = root.querySelector("img");
  var ranges = root.querySelectorAll("input"), outs = root.querySelectorAll("output");
  function show() {{
    var index = 0;
    ranges.forEach(function (r, k) {{ index += strides[k] * +r.value; outs[k].textContent = labels[k][+r.value]; }});
    img.src = "data:image/png;base64," + frames[index];
  }}
  ranges.forEach(function (r) {{ r.addEventListener("input", show); }});
}})();
</script>
</figure>"""


def sweep(draw, controls, *, caption, alt=None, fmt=None, start=None, live=None):
    """Show a figure over a grid of values, one slider per control.

    `draw` is either a function returning a new matplotlib Figure for `draw(**values)`, or a view: an
    object with `update(**values)` (which changes the data of one persistent figure) and `png()`.
    `controls`: {argument name: list of values}; `fmt`: {name: format string} for the labels;
    `start`: {name: index} of the first frame shown. Live ipywidgets sliders in a Jupyter session,
    precomputed frames elsewhere (see the module doc).
    """
    from IPython.display import HTML, display

    names = list(controls)
    values = {n: list(controls[n]) for n in names}
    for n in names:
        if not values[n]:
            raise ValueError(f"controls['{n}']: expected at least one value, got none")
    fmt, start = fmt or {}, start or {}
    labels = {n: [fmt.get(n, n + " = {}").format(v) for v in values[n]] for n in names}
    first = {n: values[n][start.get(n, 0)] for n in names}
    if is_live() if live is None else live:
        return _live_sweep(draw, names, values, labels, first, caption)
    frames = [_frame(draw, dict(zip(names, combo)))
              for combo in itertools.product(*(values[n] for n in names))]
    controls_view = [(n, labels[n], start.get(n, 0)) for n in names]
    display(HTML(frames_html(frames, controls_view, caption=caption, alt=alt)))
    return None


def _frame(draw, values):
    if hasattr(draw, "update"):
        draw.update(**values)
        return base64.b64encode(draw.png()).decode("ascii")
    return png_base64(draw(**values))


def _live_sweep(draw, names, values, labels, first, caption):
    """ipywidgets sliders; a view is redrawn in place into an Image widget, a function into an Output."""
    import ipywidgets as widgets
    from IPython.display import HTML, display

    sliders = [widgets.SelectionSlider(options=list(zip(labels[n], values[n])), value=first[n],
                                       description=n, continuous_update=hasattr(draw, "update"))
               for n in names]
    view = widgets.Image(format="png") if hasattr(draw, "update") else widgets.Output()

    def show(change=None):
        chosen = {n: s.value for n, s in zip(names, sliders)}
        if hasattr(draw, "update"):
            draw.update(**chosen)
            view.value = draw.png()
            return
        with view:
            view.clear_output(wait=True)
            fig = draw(**chosen)
            display(fig)
            plt.close(fig)

    for s in sliders:
        s.observe(show, names="value")
    show()
    box = widgets.VBox([*sliders, view])
    display(box, HTML(f"<p>{html.escape(caption)}</p>"))
    return box


# --------------------------------------------------------------------------------------------
# The spectral-radius view (chapter "Eigenvalue analysis").
# --------------------------------------------------------------------------------------------

class SpectralView:
    """Eigenvalues of W_hh in the complex plane and ‖dℓ/dh_t‖ against t (log axis), for a loss at the
    last step with ‖dℓ/dh_T‖ = 1 (`bptt_core.gradient_profile`).

    One persistent figure. `update` recomputes, sets the data of the few artists that change and draws
    only those over a cached background (axes, ticks, labels: drawn once per T); nothing is rebuilt.
    W_hh = ρ·`bptt_core.recurrent_matrix(h, 1, kind=...)`: "normal" (ρ times an orthogonal matrix) or
    "non-normal" (the same eigenvalues plus a strictly upper block-triangular coupling).
    """

    YLIM = (1e-20, 1e20)

    def __init__(self, h=64, d=8, T_max=1000, coupling=2.5, input_scale=0.5, seed=0, dpi=80):
        rng = np.random.default_rng(seed)
        self.T_max = T_max
        self.xs = input_scale * rng.normal(size=(T_max, d))
        self.W_hx = rng.normal(0.0, 1.0 / np.sqrt(d), (h, d))
        self.u = rng.normal(size=h)
        self.u /= np.linalg.norm(self.u)
        self.base = {k: bc.recurrent_matrix(h, 1.0, kind=k, coupling=coupling, seed=seed + 1)
                     for k in ("normal", "non-normal")}
        self.eigs = {k: np.linalg.eigvals(W) for k, W in self.base.items()}
        fig = Figure(figsize=(7.4, 3.0), dpi=dpi)      # not pyplot's: no automatic display or closing
        FigureCanvasAgg(fig)
        ax_eig, ax = fig.subplots(1, 2, width_ratios=(1, 2.1))
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.86, wspace=0.3)
        angle = np.linspace(0.0, 2 * np.pi, 200)
        ax_eig.plot(np.cos(angle), np.sin(angle), color="0.5", lw=0.8, label="unit circle")
        ax_eig.set(xlim=(-2.1, 2.1), ylim=(-2.1, 2.1), aspect="equal", xlabel="Re λ", ylabel="Im λ")
        ax.set(yscale="log", ylim=self.YLIM, xlabel="t", ylabel=r"$\|d\ell/dh_t\|$")
        ax.yaxis.set_major_locator(LogLocator(base=1e5, numticks=10))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.axhline(1.0, color="0.85", lw=0.6, zorder=0)
        self._changing = [
            ax_eig.plot([], [], ".", ms=4, color="C0", label=r"$\lambda_i(W_{hh})$")[0],
            ax.plot([], [], color="C3", lw=1.4, label=r"$\|d\ell/dh_t\|$")[0],
            ax.plot([], [], "--", color="0.4", lw=1.0, label=r"$\rho^{T-t}$")[0],
            ax.text(0.02, 0.04, "", transform=ax.transAxes, fontsize=8, color="C3"),
            fig.text(0.02, 0.95, "", ha="left", fontsize=9),
        ]
        self._eig_dots, self._line, self._guide, self._note, self._title = self._changing
        for artist in self._changing:
            artist.set_animated(True)              # left out of full draws; drawn by update
        ax_eig.legend(loc="lower left", fontsize=7, frameon=False)
        fig.legend(handles=self._changing[1:3], loc="upper right", ncol=2, fontsize=8, frameon=False,
                   bbox_to_anchor=(0.99, 0.99))
        self.figure, self._ax, self._backgrounds, self.last = fig, ax, {}, None

    def _background(self, T):
        """The figure without the changing artists, for this T's x-axis (cached)."""
        if T not in self._backgrounds:
            self._ax.set_xlim(0, T)
            self.figure.canvas.draw()
            self._backgrounds[T] = self.figure.canvas.copy_from_bbox(self.figure.bbox)
        return self._backgrounds[T]

    def update(self, rho=1.0, T=200, activation="identity", kind="normal"):
        """Recompute for these controls and redraw in place; `self.last` keeps the numbers drawn."""
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
        self._title.set_text(f"ρ = {rho:.2f}, {kind} $W_{{hh}}$, {activation}, T = {T}")
        if overflowed.any():
            note = (f"overflow: ‖dℓ/dh_t‖ > {np.finfo(float).max:.1e} "
                    f"for t ≤ {int(np.flatnonzero(overflowed).max())}")
        elif not lo <= norms[0] <= hi:
            note = f"‖dℓ/dh_0‖ = {norms[0]:.1e}, off the axis"
        else:
            note = ""
        self._note.set_text(note)
        canvas = self.figure.canvas
        canvas.restore_region(self._background(T))
        for artist in self._changing:
            self.figure.draw_artist(artist)
        self.last = {"norms": norms, "overflow": bool(overflowed.any() or caught), "note": note}
        return self

    def png(self):
        """The figure as drawn by the last update, as PNG bytes (the figure stays open)."""
        from PIL import Image

        buf = io.BytesIO()
        image = Image.fromarray(np.asarray(self.figure.canvas.buffer_rgba())).convert("RGB")
        image.quantize(64, method=Image.Quantize.FASTOCTREE).save(buf, "png")  # a palette: 3× smaller
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
    sym = {"phi": r"$\phi$", "mul": r"$\times$", "ell": r"$\ell$", "mean": r"mean"}
    base, _, step = name.partition("_") if "@" not in name else (name.split("@")[0], "", "")
    if name.startswith("W_"):
        return {"W_hx": r"$W_{hx}$", "W_hh": r"$W_{hh}$", "W_qh": r"$W_{qh}$"}[name.split("@")[0]]
    if base in sym:
        return sym[base]
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
        if kind == "op":
            ax.add_patch(Circle((x, y), 0.3, fc=OP_COLOR, ec="0.2", alpha=alpha, lw=1.0))
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
    sliders; live, T too (and ρ up to 2). On the static page T is 200 and ρ runs over 0.5..1.5."""
    view = view or SpectralView()
    live = is_live()
    rhos = np.round(np.linspace(0.5, 2.0, 31) if live else np.linspace(0.5, 1.5, 11), 2)
    controls = {"rho": list(rhos), "activation": ["identity", "tanh"], "kind": ["normal", "non-normal"]}
    if live:
        controls["T"] = [50, 100, 200, 500, 1000]
    return sweep(view, controls, live=live, fmt={"rho": "ρ = {:.2f}", "activation": "{}", "kind": "{}", "T": "T = {}"},
                 start={"rho": int(np.flatnonzero(rhos == 1.0)[0]), "T": 2},
                 caption="The eigenvalues of W_hh (left) and the norm of the gradient that a loss at the last "
                         "step sends back to h_t (right, log scale). Drag ρ across 1: the red line tilts from "
                         "vanishing (it falls to the left) to exploding (it rises to the left). The dashed "
                         "line is ρ^(T−t), what the eigenvalues alone predict; compare it with the non-normal "
                         "matrix and with tanh.")
