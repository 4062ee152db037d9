#!/usr/bin/env bash
# No container engine runs here, so this proves the Dockerfile's install steps another way: the
# same pip commands (wheels only, no compiler) into a clean virtual environment, then both of
# the image's commands start. Usage: scripts/check-image-install.sh [DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$(mktemp -d)}
python3.11 -m venv --clear "$dir/venv"
"$dir/venv/bin/pip" install --only-binary=:all: pip==25.2 >/dev/null
"$dir/venv/bin/pip" install --only-binary=:all: --no-compile "$root" >/dev/null
export PATH="$dir/venv/bin:$PATH"
cd "$dir"
# The launcher: refuses unusable input with exit 2 and one JSON line.
set +e
out=$(env -i PATH="$PATH" python -m launcher_job 2>/dev/null)
code=$?
set -e
[ "$code" -eq 2 ] || { echo "launcher exited $code, expected 2" >&2; exit 1; }
echo "$out" | grep -q '"outcome": "error"' || { echo "launcher printed: $out" >&2; exit 1; }
# The operator: its entry point loads kopf and the handlers.
python -m wfclock.controller --help >/dev/null
python -c "import wfclock.controller.handlers"
# The development harness (devstack/) stays out of the product.
if python -c "import wfclock_devstack" 2>/dev/null; then
  echo "the image holds the development harness (wfclock_devstack)" >&2; exit 1
fi
wfclock --help >/dev/null
echo "image install steps OK: launcher and operator commands start ($dir/venv)"
