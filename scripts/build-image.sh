#!/usr/bin/env bash
# Builds wfclock's image (localhost/wfclock:dev) with podman from the project's Dockerfile and
# writes it to a docker-archive for containerd (`ctr -n k8s.io images import FILE`). The last
# line of output is the archive's path. Usage: scripts/build-image.sh
#
# Base: the Dockerfile's python image where a registry serves it; where none is reachable (this
# project's CI machine), a base made here from Debian's packages with debootstrap. Both are cached,
# and the image is rebuilt only when its inputs change (a hash of the base, the Dockerfile, the
# packaging files and the sources, kept in an image label and in the archive's name): a second run
# only hashes and checks. Installs podman, runc and debootstrap from Debian's packages when
# missing. podman runs with scripts/containers.conf (runc, cgroupfs, ulimits; see docs/image.md).
#
# Environment: WFCLOCK_CACHE (default ~/.cache/wfclock), WFCLOCK_IMAGE_TAG (default dev),
# WFCLOCK_PYTHON_IMAGE (a base image to use as it is), WFCLOCK_DEBIAN_MIRROR (default: apt's),
# WFCLOCK_IMAGE_REFRESH=1 (rebuild the Debian base, e.g. for security updates, and the image).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${WFCLOCK_CACHE:-$HOME/.cache/wfclock}
images="$cache/images"
image="localhost/wfclock:${WFCLOCK_IMAGE_TAG:-dev}"
local_base=localhost/python:3.11-bookworm-local
export CONTAINERS_CONF="$root/scripts/containers.conf"
export PATH="$PATH:/usr/sbin:/sbin"
start=$SECONDS

log() { printf '[build-image] %s\n' "$*" >&2; }
die() {
  printf '[build-image] error: %s\n' "$*" >&2
  exit 1
}

workdir=""
cleanup() {
  [ -n "$workdir" ] && [ -d "$workdir" ] || return 0
  # debootstrap unmounts what it mounted, even on failure; make sure before removing the tree.
  findmnt -rn -o TARGET | grep "^$workdir/" | sort -r | xargs -r umount -l || true
  rm -rf --one-file-system "$workdir"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || die "run as root (or with sudo): podman's rootful storage and debootstrap need it"

ensure_tools() {
  local missing=() tool
  for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
  log "installing podman runc debootstrap from Debian's packages (missing: ${missing[*]})"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
}

# containers.conf sets ulimits that must stay below this process's hard limits.
check_limits() {
  local n p
  n=$(ulimit -Hn) p=$(ulimit -Hu)
  if { [ "$n" != unlimited ] && [ "$n" -lt 20000 ]; } || { [ "$p" != unlimited ] && [ "$p" -lt 4096 ]; }; then
    die "hard limits nofile=$n nproc=$p are below scripts/containers.conf's default_ulimits (nofile=20000, nproc=4096): lower those there"
  fi
}

label() { podman image inspect --format "{{index .Labels \"$2\"}}" "$1" 2>/dev/null || true; }

# The local base: Debian bookworm's python3.11 and nothing else (no compiler), trimmed like the
# official slim images (no apt lists or caches, documentation, man pages or locales).
base_packages=python3.11,python3.11-venv,python3-distutils,python-is-python3,ca-certificates
base_recipe="debootstrap --variant=minbase --include=$base_packages bookworm; trim v1; LANG=C.UTF-8"
base_key=$(printf '%s' "$base_recipe" | sha256sum | cut -c1-16)

debian_mirror() {
  local mirror
  mirror=$(apt-cache policy 2>/dev/null | awk '$3 == "bookworm/main" && $2 ~ /^https?:/ { print $2; exit }')
  echo "${WFCLOCK_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}"
}

build_local_base() {
  local mirror version old t=$SECONDS
  mirror=$(debian_mirror)
  old=$(podman image inspect --format '{{.Id}}' "$local_base" 2>/dev/null || true)
  workdir=$(mktemp -d "$images/rootfs.XXXXXX")
  log "building the base $local_base from Debian bookworm's packages ($mirror, about 1 minute)"
  if ! debootstrap --variant=minbase --include="$base_packages" bookworm "$workdir/root" "$mirror" \
    >"$images/debootstrap.log" 2>&1; then
    tail -n 20 "$images/debootstrap.log" >&2
    die "debootstrap failed (full log: $images/debootstrap.log)"
  fi
  # shellcheck disable=SC2016 # dpkg-query's format, not a shell expansion
  version=$(chroot "$workdir/root" dpkg-query -W -f='${Version}' python3.11)
  (
    cd "$workdir/root"
    rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/* \
      usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/*
  )
  tar --numeric-owner -C "$workdir/root" -c . | podman import -q \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --change "LABEL dev.wfclock.base-recipe=$base_key" \
    --change "LABEL dev.wfclock.python-package=python3.11=$version" \
    - "$local_base" >/dev/null
  cleanup
  workdir=""
  [ -z "$old" ] || podman rmi "$old" >/dev/null 2>&1 || true
  log "base $local_base (python3.11 $version) in $((SECONDS - t)) s"
}

# Sets $base, the image to build on.
choose_base() {
  local official
  official=$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$root/Dockerfile")
  [ -n "$official" ] || die "no 'ARG PYTHON_IMAGE=' default in the Dockerfile"
  [[ "$official" == */* ]] || official="docker.io/library/$official"
  if [ -n "${WFCLOCK_PYTHON_IMAGE:-}" ]; then
    podman image exists "$WFCLOCK_PYTHON_IMAGE" || podman pull -q "$WFCLOCK_PYTHON_IMAGE" >/dev/null ||
      die "cannot find or pull WFCLOCK_PYTHON_IMAGE=$WFCLOCK_PYTHON_IMAGE"
    base=$WFCLOCK_PYTHON_IMAGE
    return
  fi
  if [ "${WFCLOCK_IMAGE_REFRESH:-}" != 1 ]; then
    if podman image exists "$official"; then
      base=$official
      return
    fi
    if [ "$(label "$local_base" dev.wfclock.base-recipe)" = "$base_key" ]; then
      base=$local_base
      return
    fi
  fi
  if timeout 120 podman pull -q "$official" >/dev/null 2>"$images/pull.log"; then
    base=$official
    return
  fi
  log "cannot pull $official ($(tail -n 1 "$images/pull.log")); making a base from Debian's packages"
  build_local_base
  base=$local_base
}

# Everything the image is made of: the base (by id), the build recipe, the packaging files and the
# sources the Dockerfile copies (less what .dockerignore leaves out).
inputs_hash() {
  (
    cd "$root"
    echo "base $1"
    find Dockerfile .dockerignore pyproject.toml README.md scripts/build-image.sh \
      scripts/containers.conf operator launcher_job -type f \
      ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum
  ) | sha256sum | cut -c1-16
}

build_image() {
  local base=$1 key=$2 version old t=$SECONDS mount=()
  version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml")
  # pip inside the build trusts the machine's CA bundle (a proxy may re-sign TLS): the folder is
  # mounted read-only at the same path during RUN steps only; it is not part of the image.
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mount=(-v /etc/ssl/certs:/etc/ssl/certs:ro --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
  fi
  old=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  log "building $image on $base (inputs $key)"
  if ! podman build --network host --layers=false --pull=never \
    --build-arg PYTHON_IMAGE="$base" "${mount[@]}" \
    --label "dev.wfclock.inputs=$key" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.base.name=$base" \
    -t "$image" -f "$root/Dockerfile" "$root" >"$images/build.log" 2>&1; then
    tail -n 30 "$images/build.log" >&2
    die "podman build failed (full log: $images/build.log)"
  fi
  # The image this one replaces, unless something else still uses it.
  if [ -n "$old" ] && [ "$old" != "$(podman image inspect --format '{{.Id}}' "$image")" ]; then
    podman rmi "$old" >/dev/null 2>&1 || true
  fi
  log "built $image in $((SECONDS - t)) s"
}

write_archive() {
  local archive=$1 t=$SECONDS
  rm -f "$archive.tmp"
  podman save -q --format docker-archive -o "$archive.tmp" "$image"
  mv "$archive.tmp" "$archive"
  # Keep the three newest archives.
  find "$images" -maxdepth 1 -name 'wfclock-*.tar' -printf '%T@ %p\n' | sort -rn | tail -n +4 |
    cut -d' ' -f2- | xargs -r rm -f
  log "wrote $archive in $((SECONDS - t)) s"
}

mkdir -p "$images"
# One build at a time per cache (worktrees share it).
exec 9>"$images/.lock"
flock 9

ensure_tools
check_limits
choose_base
base_id=$(podman image inspect --format '{{.Id}}' "$base")
key=$(inputs_hash "$base_id")
archive="$images/wfclock-$key.tar"
if [ "${WFCLOCK_IMAGE_REFRESH:-}" = 1 ] || [ "$(label "$image" dev.wfclock.inputs)" != "$key" ]; then
  build_image "$base" "$key"
  rm -f "$archive"
fi
[ -f "$archive" ] || write_archive "$archive"
log "$image up to date (inputs $key, base $base) in $((SECONDS - start)) s"
echo "$archive"
