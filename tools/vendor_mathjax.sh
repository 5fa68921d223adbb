#!/usr/bin/env bash
# Vendor MathJax 3 from the npm registry into _vendor/mathjax/, which Sphinx copies into the site
# (html_extra_path in _config.yml), so that no page asks a CDN for it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=3.2.2
DEST=_vendor/mathjax
STAMP="$DEST/.vendored-$VERSION-with-extensions"
[ -f "$STAMP" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "mathjax@$VERSION" --silent >/dev/null && tar xzf "mathjax-$VERSION.tgz")
rm -rf "$DEST" && mkdir -p "$DEST/output/chtml/fonts"
cp "$tmp/package/es5/tex-chtml.js" "$DEST/"
cp -r "$tmp/package/es5/output/chtml/fonts/woff-v2" "$DEST/output/chtml/fonts/"
mkdir -p "$DEST/input/tex"                      # TeX extensions MathJax autoloads (\boldsymbol, ...)
cp -r "$tmp/package/es5/input/tex/extensions" "$DEST/input/tex/"
cp "$tmp/package/LICENSE" "$DEST/"
touch "$STAMP"
echo "vendored MathJax $VERSION into $DEST"
