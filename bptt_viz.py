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

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

_counter = itertools.count(1)


def is_live():
    """True in a kernel started by a Jupyter server (where ipywidgets can talk back)."""
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


def frames_html(frames, controls, *, caption):
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
<img src="data:image/png;base64,{frames[first]}" alt="{esc(caption)}" style="max-width:100%">
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


def sweep(draw, controls, *, caption, fmt=None, start=None, live=None):
    """Show `draw(**values)` (a function returning a matplotlib Figure) over a grid of values.

    `controls`: {argument name: list of values}, one slider each; `fmt`: {name: format string} for
    the labels; `start`: {name: index} of the first frame shown. Live ipywidgets sliders in a Jupyter
    session, precomputed frames elsewhere (see the module doc).
    """
    from IPython.display import HTML, display

    names = list(controls)
    values = {n: list(controls[n]) for n in names}
    for n in names:
        if not values[n]:
            raise ValueError(f"controls['{n}']: expected at least one value, got none")
    fmt, start = fmt or {}, start or {}
    labels = {n: [fmt.get(n, n + " = {}").format(v) for v in values[n]] for n in names}
    if is_live() if live is None else live:
        _live_sweep(draw, names, values, labels, start, caption)
        return
    frames = [png_base64(draw(**dict(zip(names, combo))))
              for combo in itertools.product(*(values[n] for n in names))]
    controls_view = [(n, labels[n], start.get(n, 0)) for n in names]
    display(HTML(frames_html(frames, controls_view, caption=caption)))


def _live_sweep(draw, names, values, labels, start, caption):
    import ipywidgets as widgets
    from IPython.display import HTML, display

    sliders = [widgets.SelectionSlider(options=list(zip(labels[n], values[n])), value=values[n][start.get(n, 0)],
                                       description=n, continuous_update=False) for n in names]
    out = widgets.Output()

    def show(change=None):
        with out:
            out.clear_output(wait=True)
            fig = draw(**{n: s.value for n, s in zip(names, sliders)})
            display(fig)
            plt.close(fig)

    for s in sliders:
        s.observe(show, names="value")
    show()
    display(widgets.VBox([*sliders, out]), HTML(f"<p>{html.escape(caption)}</p>"))


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
