"""The static site: self-contained, light, usable on a phone, in dark mode and with a screen reader.

What this extension does, and why:

- Kernel-free sliders (bptt_viz SITE mode). At setup it sets BPTT_STATIC_FRAMES=1 and BPTT_FRAMES_DIR
  for the kernels the build starts, so every `bv.sweep` writes its frames as PNG files (content-hash
  names) into `<site>/_frames/`; the pages refer to them by URL, so a browser caches them. Each page's
  references are made relative to that page here; frames no page refers to any more are removed.
  In this mode bptt_viz also stores every chapter figure at 2x (matplotlib's "retina" format).
- Site CSS and JS (`_ext/static/`, deferred): working navigation drawers, display equations that
  scroll with a visible cue, dark-mode colours, named solution toggles, search snippets without TeX.
- Dark mode follows the OS (`default_mode: auto` in _config.yml); a one-line script resolves "auto"
  before the first paint, so a dark page does not flash light.
- Weight: drops the unused thebe scripts (Jupyter Book always loads sphinx-thebe, whose inline script
  is also added twice, a console error), sphinx-design's assets on pages that use none of it, and the
  theme's fontawesome.js (1.5 MB; the theme's CSS already draws the same icons from its web fonts).
  Those fonts hold ~2,000 icons (270 kB); the build writes subsets with only the icons the site uses
  (`_static/bptt-icons/`, a few kB), which bptt-site.css puts in their place. The search index
  (searchtools.js, searchindex.js) is left only on the search page: search-as-you-type is off.
  Figures are re-encoded with a 256-colour palette and load lazily (as the reader scrolls to them).
- Duplicate ids: sphinx-exercise gives every exercise and solution body the same id.
"""
import os
import re
from pathlib import Path

STATIC = Path(__file__).parent / "static"
FRAMES = "_frames"                      # folder of slider frames at the site root
FONTAWESOME_JS = re.compile(r'\s*<script defer src="[^"]*_static/scripts/fontawesome\.js[^"]*"></script>')
# The theme loads the search index on every page for search-as-you-type, which is off (theme default):
# only search.html uses it.
SEARCH_JS = re.compile(r'\s*<script src="[^"]*(?:_static/searchtools|_static/language_data|searchindex)\.js"></script>')
DARK_BEFORE_PAINT = ("(function(){var d=document.documentElement;if(d.dataset.theme==='auto'){"
                     "d.dataset.theme=matchMedia('(prefers-color-scheme: dark)').matches?'dark':'light';}})();")


def _name(asset):
    return str(getattr(asset, "filename", asset) or "")


def _page_assets(app, pagename, templatename, context, doctree):
    """Leave out scripts and styles this page does not use."""
    body = context.get("body", "")
    uses_design = 'class="sd-' in body
    context["script_files"] = [
        s for s in context.get("script_files", [])
        if "thebe" not in _name(s)
        and "THEBE_JS_URL" not in str(getattr(s, "attributes", {}).get("body", ""))
        and (uses_design or "design-tabs" not in _name(s))]
    context["css_files"] = [
        c for c in context.get("css_files", [])
        if "thebe" not in _name(c) and (uses_design or "sphinx-design" not in _name(c))]


def _page_body(app, pagename, templatename, context, doctree):
    """Frame URLs relative to this page; one id per exercise and solution body."""
    body = context.get("body")
    if not body:
        return
    root = context.get("content_root") or app.builder.get_target_uri(pagename).count("/") * "../"
    body = body.replace(f'src="{FRAMES}/', f'src="{root}{FRAMES}/')
    counters = {}

    def unique(match):
        kind = match.group(1)
        counters[kind] = counters.get(kind, 0) + 1
        return f'id="{kind}-content-{counters[kind]}"'

    body = re.sub(r'id="(exercise|solution)-content"', unique, body)
    # Figures load as the reader scrolls to them, not all on arrival.
    context["body"] = re.sub(r"<img (?![^>]*\bloading=)", '<img loading="lazy" ', body)


def _finish(app, exception):
    """Remove fontawesome.js from every page and from the site (its CSS icons stay), and the search
    index from every page but the search page; write the icon font subsets."""
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    referenced = set()
    for page in out.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        referenced |= set(re.findall(r"\b([0-9a-f]{20}\.png)\b", text))
        lean = FONTAWESOME_JS.sub("", text)
        if page.name != "search.html" and "search_as_you_type = true" not in text:
            lean = SEARCH_JS.sub("", lean)
        if lean != text:
            page.write_text(lean, encoding="utf-8")
    for leftover in (out / "_static" / "scripts").glob("fontawesome.js*"):
        leftover.unlink()
    _subset_icon_fonts(out)
    _palette_images(out / "_images")
    for frame in (out / FRAMES).glob("*.png"):      # frames of earlier builds that no page shows now
        if frame.name not in referenced:
            frame.unlink()


ICON_RULE = re.compile(r"([^{}]*)\{([^{}]*)\}")
ICON_CLASS = re.compile(r"\.(fa-[\w-]+):(?:before|after)")
ESCAPE = re.compile(r"\\(f[0-9a-f]{3})\b", re.I)


def _icon_codepoints(out):
    """The Font Awesome code points the site shows: the fa-* classes its pages use, and the icons its
    style sheets draw themselves (admonition titles, the theme's icon variables, ...)."""
    by_class, drawn = {}, set()
    for sheet in (out / "_static").rglob("*.css"):
        for selector, body in ICON_RULE.findall(sheet.read_text(encoding="utf-8", errors="ignore")):
            points = {int(h, 16) for h in ESCAPE.findall(body)} | {ord(c) for c in body if 0xE000 <= ord(c) <= 0xF8FF}
            classes = ICON_CLASS.findall(selector)
            if classes and all(part.strip().startswith(".fa-") for part in selector.split(",")):
                for c in classes:
                    by_class.setdefault(c, set()).update(points)
            else:
                drawn |= points
    used = set()
    for page in out.rglob("*.html"):
        used |= set(re.findall(r"\b(fa-[\w-]+)", page.read_text(encoding="utf-8")))
    return drawn.union(*(by_class.get(c, set()) for c in used))


def _subset_icon_fonts(out):
    from fontTools import subset

    fonts = out / "_static" / "vendor" / "fontawesome" / "webfonts"
    points = _icon_codepoints(out)
    target = out / "_static" / "bptt-icons"
    target.mkdir(exist_ok=True)
    for name in ("fa-solid-900", "fa-brands-400"):
        options = subset.Options()
        options.flavor = "woff"                                 # zlib: no brotli needed
        options.layout_features = []
        font = subset.load_font(str(fonts / f"{name}.ttf"), options)
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=points)
        subsetter.subset(font)
        subset.save_font(font, str(target / f"{name}.woff"), options)


def _palette_images(folder):
    """Re-encode opaque PNG figures with a 256-colour palette (what matplotlib draws: a few colours and
    their anti-aliased edges), about 2-3x smaller; kept only where it is smaller. The smallest text size
    that bptt_viz records in each figure (a PNG text chunk) is kept; the browser test reads it."""
    import io

    import numpy as np
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    import bptt_viz

    for png in folder.glob("*.png"):
        with Image.open(png) as image:
            image.load()
        if image.mode == "P":
            continue
        if image.mode in ("RGBA", "LA") and np.asarray(image.getchannel("A")).min() < 255:
            continue                                    # transparency: leave as it is
        info = PngInfo()
        if bptt_viz.TEXT_PX_KEY in image.text:
            info.add_text(bptt_viz.TEXT_PX_KEY, image.text[bptt_viz.TEXT_PX_KEY])
        buf = io.BytesIO()
        image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(buf, "png", optimize=True,
                                                                                  pnginfo=info)
        if buf.tell() < png.stat().st_size:
            png.write_bytes(buf.getvalue())


def _config(app, config):
    config.html_static_path = [*config.html_static_path, str(STATIC)]


def setup(app):
    frames = Path(app.outdir) / FRAMES
    frames.mkdir(parents=True, exist_ok=True)
    os.environ["BPTT_STATIC_FRAMES"] = "1"           # the kernels the build starts inherit these
    os.environ["BPTT_FRAMES_DIR"] = str(frames)
    app.connect("config-inited", _config)
    app.add_css_file("bptt-site.css")
    app.add_js_file(None, body=DARK_BEFORE_PAINT)
    app.add_js_file("bptt-site.js", defer="defer")
    app.connect("html-page-context", _page_assets, priority=900)
    app.connect("html-page-context", _page_body, priority=900)
    app.connect("build-finished", _finish)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
