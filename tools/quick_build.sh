#!/usr/bin/env bash
# A fast check of the book's MyST while writing: build with -W -n --keep-going from the notebooks'
# stored outputs (no execution) into a folder of your choice. `make book` is the real build.
#   bash tools/quick_build.sh /tmp/quick
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/bptt-quick}
cfg=$(mktemp -p . .quick-config-XXXX.yml)     # beside _config.yml: its paths are relative
trap 'rm -f "$cfg"' EXIT
sed 's/execute_notebooks: force/execute_notebooks: "off"/' _config.yml > "$cfg"
.venv/bin/jupyter-book build . --config "$cfg" --path-output "$out" -W -n --keep-going
