"""The book's one notation (intro.md, "Notation"), checked on every page.

The checker reads intro.md and every chapter's markdown cells and figure captions, finds the maths in
them ($...$, $$...$$, {math} blocks and roles; code spans and code blocks are not maths), and reports
the forms the book never uses:

- Pascanu's ∂⁺ written as a symbol (``\\partial^+``): the book says it in words;
- weight subscripts set upright (``\\textrm{hh}``, ``\\mathrm{hh}``): they are plain italic, ``_{hh}``;
- an italic d as a derivative (``\\frac{dL}{dh}``, ``{dL}``, ``dL/dh``): a total derivative has an
  upright ``\\mathrm{d}``;
- a curly ∂ between two hidden states more than one step apart (``\\partial h_t/\\partial h_k``): a
  multi-step Jacobian is a total derivative, ``\\mathrm{d}\\mathbf{h}_t/\\mathrm{d}\\mathbf{h}_k``;
- a weight matrix that is not bold (``W_{hh}``, ``W_hh``).

In code cells it reads the strings of plot labels (axis labels, titles, legend labels, text) and the
slider labels of ``bv.sweep`` (its ``fmt``, or the default "name = value"): their mathtext follows the
same rules, and their plain text may not write ``rho``, ``dL/dh`` or ``W_hh`` (the reader sees ρ,
$\\mathrm{d}L/\\mathrm{d}\\mathbf{h}_t$, $\\mathbf{W}_{hh}$).
"""
import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------------------------
# Finding the maths in MyST markdown.
# ----------------------------------------------------------------------------------------------

# Directives whose body is prose (checked like the page); any other fenced block is code (skipped),
# except {math}, whose body is maths.
PROSE_DIRECTIVES = {"exercise", "solution", "note", "tip", "hint", "warning", "important", "attention",
                    "caution", "danger", "error", "seealso", "admonition", "dropdown", "margin", "sidebar",
                    "epigraph", "topic", "figure", "prf:theorem", "prf:proof", "prf:definition"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*(?:\{([\w:-]+)\})?")


def split_fences(text):
    """(prose, maths from {math} blocks): code blocks dropped, prose directives kept as prose."""
    prose, maths = [], []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        mark, name = m.group(1), m.group(2)
        if name in PROSE_DIRECTIVES:           # the opening line goes; its closing fence is dropped below
            prose.append("")
            i += 1
            continue
        body, i = [], i + 1
        while i < len(lines) and not re.match(rf"^\s*{re.escape(mark[0])}{{{len(mark)},}}\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        i += 1                                 # the closing fence
        if name == "math":
            maths.append("\n".join(ln for ln in body if not ln.lstrip().startswith(":")))
        prose.append("")
    return "\n".join(prose), maths


MATH_ROLE = re.compile(r"\{math\}`([^`]*)`")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
INLINE = re.compile(r"(?<![\\$])\$((?:[^$\\]|\\.)+?)\$")


def math_spans(text):
    """Every piece of LaTeX in a MyST markdown text."""
    prose, maths = split_fences(text)
    maths += MATH_ROLE.findall(prose)
    prose = CODE_SPAN.sub(" ", MATH_ROLE.sub(" ", prose))
    maths += DISPLAY.findall(prose)
    prose = DISPLAY.sub(" ", prose)
    maths += [m for m in INLINE.findall(prose) if not re.search(r"\n\s*\n", m)]
    return maths


# ----------------------------------------------------------------------------------------------
# The rules.
# ----------------------------------------------------------------------------------------------

WEIGHT = r"(?:hh|hx|xh|qh|hq)"
MATH_RULES = [
    ("∂⁺ as a symbol (say in words that Pascanu et al. write ∂⁺)", re.compile(r"\\partial\s*\^")),
    ("upright weight subscript (write _{hh})",
     re.compile(rf"\\(?:textrm|mathrm|text|rm|mathsf|operatorname)\s*\{{\s*{WEIGHT}\s*\}}")),
    ("italic d in a derivative (write \\mathrm{d})",
     re.compile(r"\\[dt]?frac\s*\{\s*d(?:[^{}]|\{[^{}]*\})*\}\s*\{\s*d(?![a-zA-Z]{2})")),
    ("italic d in a derivative (write \\mathrm{d})", re.compile(r"\{\s*d(?:L|\\ell)\s*\}")),
    ("italic d in a derivative (write \\mathrm{d})",
     re.compile(r"(?<![\\A-Za-z])d\s*(?:\\ell|\\mathbf\{[^{}]*\}|\\boldsymbol\{[^{}]*\}|[A-Za-z])"
                r"(?:_\{[^{}]*\}|_\w)?\s*/\s*d(?=\s*[\\A-Za-z])")),
    ("weight matrix not bold (write \\mathbf{W}_{hh})",
     re.compile(rf"(?<!\\mathbf\{{)(?<!\\boldsymbol\{{)(?<!\\mathbf )(?<![A-Za-z])W_(?:\{{\s*(?:\\[A-Za-z]+\s*\{{\s*)?{WEIGHT}|{WEIGHT})")),
]

STATE = r"(?:\\mathbf\{h\}|\\boldsymbol\{h\}|h)"
SUB = r"_(\{[^{}]*\}|\w)"
PARTIAL_STATES = re.compile(rf"\\partial\s*{STATE}{SUB}\s*(?:\}}\s*\{{|/)\s*\\partial\s*{STATE}{SUB}")


def _offset(sub):
    """'t-1' -> ('t', -1); '3' -> ('', 3); None if it is not a symbol plus or minus an integer."""
    s = re.sub(r"\s+", "", sub.strip("{}"))
    m = re.fullmatch(r"([A-Za-z]?)([+-]\d+)?", s) or re.fullmatch(r"()(\d+)", s)
    if not m or not s:
        return None
    return m.group(1), int(m.group(2) or 0)


def _one_step(upper, lower):
    a, b = _offset(upper), _offset(lower)
    return a is not None and b is not None and a[0] == b[0] and a[1] - b[1] == 1


def check_math(tex):
    """The notation rules broken by one piece of LaTeX: a list of (rule, offending text)."""
    found = [(rule, m.group(0)) for rule, rx in MATH_RULES for m in rx.finditer(tex)]
    for m in PARTIAL_STATES.finditer(tex):
        if not _one_step(m.group(1), m.group(2)):
            found.append(("curly ∂ for a multi-step Jacobian (write \\mathrm{d}\\mathbf{h}_t/\\mathrm{d}\\mathbf{h}_k)",
                          m.group(0)))
    return found


def check_markdown(text):
    return [hit for tex in math_spans(text) for hit in check_math(tex)]


GREEK = r"(?:rho|pi|theta|sigma|lambda|eta|alpha|beta|gamma|delta|epsilon|xi|tau|mu|phi)"
PLAIN_LABEL_RULES = [
    ("Greek letter spelled out in a label (write ρ or $\\rho$)", re.compile(rf"(?<![\\\w]){GREEK}(?![A-Za-z])")),
    ("plain dL/dh in a label (write $\\mathrm{{d}}L/\\mathrm{{d}}\\mathbf{{h}}_t$)",
     re.compile(r"(?<![\w])d[A-Za-z]\w*\s*/\s*d[A-Za-z]")),
    ("plain W_hh in a label (write $\\mathbf{W}_{hh}$)", re.compile(rf"(?<![\w\\])W_\{{?{WEIGHT}")),
]


def check_label(text):
    """A plot or slider label: mathtext by the maths rules, the rest by the plain-text rules."""
    parts = re.split(r"(?<!\\)\$", text)
    found = [hit for tex in parts[1::2] for hit in check_math(tex)]
    for plain in parts[0::2]:
        found += [(rule, m.group(0)) for rule, rx in PLAIN_LABEL_RULES for m in rx.finditer(plain)]
    return found


# ----------------------------------------------------------------------------------------------
# Labels in code cells.
# ----------------------------------------------------------------------------------------------

LABEL_CALLS = {"set_xlabel", "set_ylabel", "set_title", "suptitle", "xlabel", "ylabel", "title", "text",
               "annotate", "set_label", "supxlabel", "supylabel"}


def _text(node):
    """The literal text of a string or f-string node (f-string fields dropped), or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return " ".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    return None


def _name(func):
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def code_labels(source):
    """The label texts in one code cell: plot labels and sweep slider labels."""
    lines = [ln for ln in source.split("\n") if not ln.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return []
    labels = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        if name in LABEL_CALLS and node.args:
            labels.append(_text(node.args[0]))
        labels += [_text(k.value) for k in node.keywords if k.arg in ("label", "xlabel", "ylabel", "title")]
        if name == "sweep":
            labels += _slider_labels(node)
    return [t for t in labels if t]


def _slider_labels(call):
    keywords = {k.arg: k.value for k in call.keywords}
    controls = call.args[1] if len(call.args) > 1 else keywords.get("controls")
    fmt = keywords.get("fmt")
    names = [k.value for k in getattr(controls, "keys", []) if isinstance(k, ast.Constant)]
    given = {}
    if isinstance(fmt, ast.Dict):
        given = {k.value: _text(v) for k, v in zip(fmt.keys, fmt.values) if isinstance(k, ast.Constant)}
    return [given.get(n) or f"{n} = {{}}" for n in names]      # bv.sweep's default label


# ----------------------------------------------------------------------------------------------
# Pages.
# ----------------------------------------------------------------------------------------------

def check_notebook(nb):
    """Every notation error in a notebook (as loaded JSON): a list of 'cell i: rule: text'."""
    out = []
    for i, cell in enumerate(nb["cells"]):
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        hits = []
        if cell["cell_type"] == "markdown":
            hits = check_markdown(src)
        elif cell["cell_type"] == "code":
            caption = cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("caption", "")
            hits = check_markdown(caption) + [h for lab in code_labels(src) for h in check_label(lab)]
        out += [f"cell {i} ({cell.get('id', '?')}): {rule}: {text!r}" for rule, text in hits]
    return out


PAGES = [ROOT / "intro.md", *sorted((ROOT / "chapters").glob("*.ipynb"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_uses_the_books_notation(page):
    if page.suffix == ".md":
        problems = [f"{rule}: {text!r}" for rule, text in check_markdown(page.read_text())]
    else:
        problems = check_notebook(json.loads(page.read_text()))
    assert not problems, f"{page.name}:\n" + "\n".join(problems)


# ----------------------------------------------------------------------------------------------
# The checker itself: it finds planted errors and passes correct text.
# ----------------------------------------------------------------------------------------------

BAD_MATH = {
    r"$\frac{\partial^+ \mathbf{h}_t}{\partial \mathbf{W}_{hh}}$": "∂⁺",
    r"$\partial^{+} L$": "∂⁺",
    r"$\mathbf{W}_{\textrm{hh}}$": "upright weight",
    r"$\mathbf{W}_{\mathrm{hx}}$": "upright weight",
    r"$\frac{dL}{d\mathbf{h}_t}$": "italic d",
    r"$\dfrac{d\mathbf{h}_t}{d\mathbf{h}_k}$": "italic d",
    r"$\frac{d}{dt}$": "italic d",
    r"$\frac{{dL}}{\mathrm{d}h}$": "italic d",
    r"$dL/dh_t$": "italic d",
    r"$d\ell_t/d\mathbf{o}_t$": "italic d",
    r"$d\mathbf{h}_t / d\mathbf{h}_{k}$": "italic d",
    r"$W_{hh}$": "not bold",
    r"$\rho(W_{hh})$": "not bold",
    r"$\mathbf{h}_t = W_hh \mathbf{h}_{t-1}$": "not bold",
    r"$\frac{\partial \mathbf{h}_t}{\partial \mathbf{h}_k}$": "multi-step",
    r"$\partial \mathbf{h}_{t}/\partial \mathbf{h}_{t-2}$": "multi-step",
    r"$\frac{\partial h_T}{\partial h_1}$": "multi-step",
    "$$\n\\Big\\|\\frac{\\partial \\mathbf{h}_t}{\\partial \\mathbf{h}_{t-k}}\\Big\\|\n$$ (eq-x)": "multi-step",
    "```{math}\n:label: eq-y\n\\frac{dL}{dW}\n```": "italic d",
    "{math}`W_{qh}`": "not bold",
    "```{solution} ex-a\n:class: dropdown\n\nThen $W_{hx}$ grows.\n```": "not bold",
    "Over two lines: $\\dfrac{\\partial L}{\\partial\n\\mathbf{h}_3} + \\frac{dL}{dh}$.": "italic d",
}

GOOD_TEXT = [
    r"$\frac{\mathrm{d}L}{\mathrm{d}\mathbf{h}_t}$ and $\mathrm{d}L/\mathrm{d}\mathbf{h}_t$",
    r"$\dfrac{\mathrm{d}\mathbf{h}_t}{\mathrm{d}\mathbf{h}_k} = \prod_{i=k+1}^{t} \frac{\partial \mathbf{h}_i}{\partial \mathbf{h}_{i-1}}$",
    r"$\frac{\partial \mathbf{h}_t}{\partial \mathbf{W}_{hh}}$, $\partial \ell_t/\partial \mathbf{o}_t$",
    r"$\frac{\partial h_{t+1}}{\partial h_t}$ and $\frac{\partial \mathbf{h}_3}{\partial \mathbf{h}_2}$",
    r"$\mathbf{X}_t \in \mathbb{R}^{B\times d}$, $d = 3$, $(TB)\times d$, $\frac{d}{2}$, $\sqrt{d}$",
    r"$\rho(\mathbf{W}_{hh})$, $w_{hh}$, $\mathbf{W}_{hh}^{(t)}$, $\boldsymbol{\delta}_t = \mathrm{d}L/\mathrm{d}\mathbf{a}_t$",
    "Pascanu et al. write ∂⁺ for the immediate derivative; the code calls it `dL_dh[t-1]` and `W_hh`.",
    "```python\nax.set_ylabel('dL/dh')  # W_{hh} in a code block is code\nx = r'$\\frac{dL}{dh}$'\n```",
    "A price of $5 and of $6 is not maths; nor is \\$W_{hh}\\$.",
    "$$\n\\mathbf{a}_t = \\mathbf{W}_{hx}\\mathbf{x}_t + \\mathbf{W}_{hh}\\mathbf{h}_{t-1}\n$$ (eq-a)",
    r"$\mathrm{d}\ell/\mathrm{d}o$ and $\frac{\mathrm{d} L}{\mathrm{d} w_{hh}}$ and $\mathbf{W}_{qh}^\top \mathbf{d}$",
]


@pytest.mark.parametrize("text", list(BAD_MATH), ids=range(len(BAD_MATH)))
def test_checker_flags_each_planted_error(text):
    hits = check_markdown(text)
    assert hits, text
    assert any(BAD_MATH[text] in rule for rule, _ in hits), hits


@pytest.mark.parametrize("text", GOOD_TEXT, ids=range(len(GOOD_TEXT)))
def test_checker_passes_correct_text(text):
    assert check_markdown(text) == []


def test_checker_finds_bad_cells_in_a_planted_notebook():
    good_md = r"The total derivative $\mathrm{d}L/\mathrm{d}\mathbf{h}_t$ of $\mathbf{W}_{hh}$."
    good_code = ('ax.set_ylabel(r"$\\|\\mathrm{d}L/\\mathrm{d}\\mathbf{h}_t\\|$")\n'
                 'ax.set_title(f"ρ = {rho:.2f}")\n'
                 'ax.plot(x, y, label=r"$\\rho(\\mathbf{W}_{hh})$")\n'
                 'bv.sweep(draw, {"rho": [0.9, 1.1]}, caption="c", alt="a", fmt={"rho": "ρ = {:.2f}"})\n')
    nb = {"cells": [
        {"cell_type": "markdown", "id": "ok-md", "metadata": {}, "source": good_md},
        {"cell_type": "code", "id": "ok-code", "metadata": {}, "source": good_code, "outputs": []},
        {"cell_type": "markdown", "id": "bad-md", "metadata": {},
         "source": ["Here $\\frac{\\partial^+ L}{\\partial \\mathbf{h}_t}$\n", "and $W_{\\textrm{hh}}$."]},
        {"cell_type": "code", "id": "bad-labels", "metadata": {}, "outputs": [],
         "source": 'ax.set_ylabel("||dL/dh_t||")\nax.set_xlabel(f"rho = {r}")\nax.plot(x, label="W_hh")\n'},
        {"cell_type": "code", "id": "bad-slider", "metadata": {}, "outputs": [],
         "source": 'bv.sweep(draw, {"rho": [0.5, 1.0]}, caption="c", alt="a")\n'
                   'bv.sweep(draw, {"t": [1, 2], "rho": [1]}, caption="c", fmt={"rho": "rho = {}"})\n'},
        {"cell_type": "code", "id": "bad-caption", "outputs": [], "source": "plt.show()",
         "metadata": {"mystnb": {"figure": {"caption": "The norm $\\|dL/dh_t\\|$ against $t$."}}}},
    ]}
    problems = check_notebook(nb)
    cells = [p.split(":")[0] for p in problems]
    assert not any("ok-" in c for c in cells), problems
    assert cells.count("cell 2 (bad-md)") == 3          # ∂⁺, \textrm{hh} and the W that is not bold
    assert cells.count("cell 3 (bad-labels)") == 3
    assert cells.count("cell 4 (bad-slider)") == 2      # the default label "rho = {}" and fmt's
    assert cells.count("cell 5 (bad-caption)") == 1
