"""Keep the site self-contained and its console clean.

Jupyter Book 1 always loads sphinx-thebe, which here adds its inline configuration script twice (the
second `const THEBE_JS_URL` is a console error) and names a CDN. This book has no live-code button
(readers run code in Binder), so the thebe scripts are dropped from every page.
"""


def _drop_thebe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files", [])
    context["script_files"] = [s for s in scripts
                               if "thebe" not in str(getattr(s, "filename", s) or "")
                               and "THEBE_JS_URL" not in str(getattr(s, "attributes", {}).get("body", ""))]


def setup(app):
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
