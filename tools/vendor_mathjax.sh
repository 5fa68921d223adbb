#!/usr/bin/env bash
# Vendor MathJax 3 from the npm registry into _vendor/mathjax/, which Sphinx copies into the site
# (html_extra_path in _config.yml), so that no page asks a CDN for it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=3.2.2
DEST=_vendor/mathjax
[ -f "$DEST/.version-$VERSION" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "mathjax@$VERSION" --silent >/dev/null && tar xzf "mathjax-$VERSION.tgz")
rm -rf "$DEST" && mkdir -p "$DEST/output/chtml/fonts"
cp "$tmp/package/es5/tex-chtml.js" "$DEST/"
cp -r "$tmp/package/es5/output/chtml/fonts/woff-v2" "$DEST/output/chtml/fonts/"
cp "$tmp/package/LICENSE" "$DEST/"
touch "$DEST/.version-$VERSION"
echo "vendored MathJax $VERSION into $DEST"
