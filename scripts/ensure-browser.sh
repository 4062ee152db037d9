#!/usr/bin/env bash
# What the console's browser tests need (tests/console): Debian's chromium package when missing,
# and axe-core from the npm registry at the version pinned in tests/console/axe/package-lock.json
# (its integrity checked by `npm ci`), cached in ~/.cache/wfclock/axe. Prints nothing on success.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
if ! command -v chromium >/dev/null 2>&1; then
  echo "[ensure-browser] installing chromium from Debian's packages" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "[ensure-browser] installing npm from Debian's packages" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
lock="$root/tests/console/axe/package-lock.json"
cache="${WFCLOCK_CACHE:-$HOME/.cache/wfclock}/axe/$(sha1sum "$lock" | cut -c1-12)"
if [ ! -f "$cache/node_modules/axe-core/axe.min.js" ]; then
  mkdir -p "$cache"
  cp "$root/tests/console/axe/package.json" "$lock" "$cache/"
  (cd "$cache" && npm ci --silent --no-audit --no-fund --ignore-scripts >/dev/null)
fi
