#!/usr/bin/env bash
# Makes sure libfaketime (Debian's package) is on this machine and prints its LD_PRELOAD library.
# The clock-skew tests run a launcher with its clock ahead of or behind the database's with it.
set -euo pipefail
find_lib() {
  for candidate in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
    if [ -f "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
}
lib="$(find_lib)"
if [ -z "$lib" ]; then
  echo "[ensure-faketime] installing libfaketime from Debian's packages" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libfaketime >/dev/null
  lib="$(find_lib)"
fi
echo "$lib"
