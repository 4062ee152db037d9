#!/usr/bin/env bash
# Makes sure a PostgreSQL server binary is on this machine (Debian's package when none is found).
# Tests start their own server from it in a temporary folder; nothing here starts a server.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null 2>&1; then
  exit 0
fi
echo "[ensure-postgres] installing postgresql from Debian's packages" >&2
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
