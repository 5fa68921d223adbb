#!/usr/bin/env bash
# Vendor MathJax 3 from the npm registry into _vendor/mathjax/, which Sphinx copies into the site
# (html_extra_path in _config.yml), so that no page asks a CDN for it. Idempotent.
# Only the components the book loads (mathjax3_config.loader in _config.yml): the loader (startup.js),
# core, TeX input and the TeX extensions it autoloads, HTML output with its fonts, and the hidden
# MathML for screen readers. Not the context menu (ui/menu, 0.4 MB): it made every formula a tab stop.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=3.2.2
DEST=_vendor/mathjax
STAMP="$DEST/.vendored-$VERSION-components"
[ -f "$STAMP" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "mathjax@$VERSION" --silent >/dev/null && tar xzf "mathjax-$VERSION.tgz")
src="$tmp/package/es5"
rm -rf "$DEST" && mkdir -p "$DEST/input/tex" "$DEST/output/chtml/fonts" "$DEST/a11y"
cp "$src/startup.js" "$src/core.js" "$DEST/"
cp "$src/input/tex.js" "$src/input/tex-base.js" "$DEST/input/"
cp -r "$src/input/tex/extensions" "$DEST/input/tex/"        # \boldsymbol etc., loaded on demand
cp "$src/output/chtml.js" "$DEST/output/"
cp "$src/output/chtml/fonts/tex.js" "$DEST/output/chtml/fonts/"
cp -r "$src/output/chtml/fonts/woff-v2" "$DEST/output/chtml/fonts/"
cp "$src/a11y/assistive-mml.js" "$DEST/a11y/"
cp "$tmp/package/LICENSE" "$DEST/"
touch "$STAMP"
echo "vendored MathJax $VERSION components into $DEST"
