#!/usr/bin/env bash
# Installs the pinned policy scanner (checkov, from PyPI) into a virtual environment of its own
# in the cache folder outside the repository (its many dependencies stay out of the project's
# venv). Does nothing when it is already there. Prints the checkov executable.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/versions.env
source "$here/versions.env"

cache=${WFCLOCK_CACHE:-$HOME/.cache/wfclock}
venv="$cache/checkov-$CHECKOV_VERSION"
python=${PYTHON:-python3.11}

# The stamp is written last: an install cut short is redone, not half used.
if [ ! -f "$venv/.installed" ]; then
  start=$SECONDS
  printf '[build-checkov] installing checkov %s\n' "$CHECKOV_VERSION" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "checkov==$CHECKOV_VERSION"
  touch "$venv/.installed"
  printf '[build-checkov] installed in %s s\n' "$((SECONDS - start))" >&2
fi
echo "$venv/bin/checkov"
