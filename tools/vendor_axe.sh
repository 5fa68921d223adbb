#!/usr/bin/env bash
# Vendor axe-core (the accessibility checker the browser tests inject into every page) from the npm
# registry into _vendor/axe-core/. It is for the tests only: _config.yml excludes it from the site.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=4.11.0
DEST=_vendor/axe-core
STAMP="$DEST/.vendored-$VERSION"
[ -f "$STAMP" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "axe-core@$VERSION" --silent >/dev/null && tar xzf "axe-core-$VERSION.tgz")
rm -rf "$DEST" && mkdir -p "$DEST"
cp "$tmp/package/axe.min.js" "$tmp/package/LICENSE" "$DEST/"
touch "$STAMP"
echo "vendored axe-core $VERSION into $DEST"
