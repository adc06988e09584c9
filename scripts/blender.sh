#!/usr/bin/env bash
# Run a real Blender with this checkout visible at the same path:
#
#   scripts/blender.sh ARGS...          blender ARGS (e.g. --background --python X -- ...)
#   scripts/blender.sh --xvfb ARGS...   the same with a GUI on a virtual X display (Xvfb)
#   scripts/blender.sh --exec CMD...    any command in Blender's environment (debugging)
#   scripts/blender.sh --provision      only provision; print Blender's version
#
# The Blender is Debian 13's (4.3, above the manifest's minimum 4.2), installed once into a
# chroot cached OUTSIDE the checkout, in $SAM3D_BLENDER_CACHE (default
# /var/cache/sam3d-blender; the chroot is <cache>/trixie, ~1.4 GB). Provisioning is
# idempotent (a stamp records the package list) and runs under a lock, so concurrent calls
# wait for one provisioning; running Blenders hold the lock shared, so the chroot is never
# replaced under them. The Debian mirror is read from this machine's apt sources
# (override: SAM3D_DEBIAN_MIRROR).
#
# Each call runs in its own mount namespace: the checkout, /tmp, the interpreter the
# checkout's .venv links to, and the folders in SAM3D_BLENDER_BIND (':'-separated) are
# bind-mounted at their own paths, with /proc, /sys and /dev. The mounts vanish when the
# last process of the call exits; nothing is left mounted on the host.
# SAM3D_BACKEND_PYTHON defaults to the checkout's .venv/bin/python (created if missing),
# so the add-on's managed backend runs from the checkout's venv.
#
# Exit status 77 with "blender.sh: unavailable: <reason>" when Blender cannot run here
# (not Linux, not root, no chroot/unshare/debootstrap, no Debian mirror, or
# SAM3D_BLENDER=skip): the test tier is then skipped with that reason.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SAM3D_BLENDER_CACHE:-/var/cache/sam3d-blender}"
SUITE="trixie"
CHROOT="$CACHE/$SUITE"
# numpy and requests: official Blender builds bundle them (the add-on uses both); Debian's
# Blender uses the system Python's packages instead.
PACKAGES="blender python3-numpy python3-requests xvfb xauth imagemagick xdotool"
STAMP_WANT="$SUITE: $PACKAGES"
# Added to a provisioned chroot in place (checked by presence, not by the stamp, so
# checkouts with an older list keep using the same chroot): python3-venv brings ensurepip,
# which Blender's Python needs to make the backend's venv (the add-on's Install backend).
ADDED_PACKAGES="python3-venv"
added_present() { compgen -G "$CHROOT/usr/lib/python3*/ensurepip/__init__.py" >/dev/null; }
XVFB_SCREEN="1600x1000x24"

unavailable() {
  echo "blender.sh: unavailable: $*" >&2
  exit 77
}

say() { echo "blender.sh: $*" >&2; }

# -- preconditions ---------------------------------------------------------------------------
check_host() {
  [ "${SAM3D_BLENDER:-}" != "skip" ] || unavailable "SAM3D_BLENDER=skip is set"
  [ "$(uname -s)" = "Linux" ] || unavailable "needs Linux (chroot + mount namespaces); this is $(uname -s)"
  [ "$(id -u)" = "0" ] || unavailable "needs root (debootstrap, chroot and bind mounts); run as root, e.g. sudo scripts/blender.sh"
  for tool in chroot unshare mount flock; do
    command -v "$tool" >/dev/null 2>&1 || unavailable "'$tool' is not installed (util-linux/coreutils)"
  done
  unshare --mount --propagation private -- true 2>/dev/null ||
    unavailable "cannot create a mount namespace here (unshare --mount failed: a container without CAP_SYS_ADMIN?)"
}

# The first Debian archive URI in the machine's apt sources (one-line and deb822 formats).
debian_mirror() {
  if [ -n "${SAM3D_DEBIAN_MIRROR:-}" ]; then
    echo "$SAM3D_DEBIAN_MIRROR"
    return 0
  fi
  local files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ "${#files[@]}" -gt 0 ] || return 1
  # One-line: "deb [opts] URI SUITE ..."; deb822: "URIs: URI ...". Keep Debian's main
  # archive (a path ending in /debian), not its security or ports archives.
  {
    sed -nE 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([a-z+]+:\/\/[^[:space:]]+).*/\2/p' "${files[@]}"
    sed -nE 's/^[[:space:]]*URIs:[[:space:]]*//p' "${files[@]}" | tr ' ' '\n'
  } | sed -E 's:/+$::' | grep -E '^[a-z+]+://[^[:space:]]+/debian$' | head -n 1
}

ensure_debootstrap() {
  command -v debootstrap >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 ||
    unavailable "debootstrap is not installed and there is no apt-get to install it"
  say "installing debootstrap (apt-get)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } >&2; then
    unavailable "debootstrap is not installed and 'apt-get install debootstrap' failed"
  fi
}

# -- provisioning (under the exclusive lock) -------------------------------------------------
provisioned() {
  [ -f "$CHROOT/.sam3d-provisioned" ] && [ "$(cat "$CHROOT/.sam3d-provisioned")" = "$STAMP_WANT" ] &&
    [ -x "$CHROOT/usr/bin/blender" ] && added_present
}

# apt-get install PACKAGES (default: $PACKAGES $ADDED_PACKAGES) inside the chroot DIR (in a
# throwaway mount namespace).
apt_install() {
  cp /etc/resolv.conf "$1/etc/resolv.conf" 2>/dev/null || true
  if ! unshare --mount --propagation private -- sh -c '
        set -e
        mount -t proc proc "$1/proc"
        mount --rbind /dev "$1/dev"
        chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
          sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $2 && apt-get clean"
      ' sh "$1" "${2:-$PACKAGES $ADDED_PACKAGES}" >>"$CACHE/provision.log" 2>&1; then
    tail -n 20 "$CACHE/provision.log" >&2
    say "installing Blender in the chroot failed; the log is $CACHE/provision.log"
    exit 1
  fi
}

provision() {
  local t0=$SECONDS
  : >"$CACHE/provision.log"
  # Only packages added since: install them in place (nothing is removed or replaced, so
  # Blenders running from the chroot are not disturbed).
  if [ -x "$CHROOT/usr/bin/blender" ] && [ "$(cat "$CHROOT/.sam3d-provisioned" 2>/dev/null)" = "$STAMP_WANT" ]; then
    say "adding $ADDED_PACKAGES to $CHROOT"
    apt_install "$CHROOT" "$ADDED_PACKAGES"
    say "added in $((SECONDS - t0)) s"
    return 0
  fi
  # The same Debian release with another package list: add the packages in place (the
  # exclusive lock guarantees that no Blender runs from it now).
  if [ -x "$CHROOT/usr/bin/apt-get" ] && grep -q "^$SUITE:" "$CHROOT/.sam3d-provisioned" 2>/dev/null; then
    say "updating the packages of $CHROOT: $PACKAGES"
    rm -f "$CHROOT/.sam3d-provisioned"
    apt_install "$CHROOT"
    finish_chroot "$CHROOT"
    echo "$STAMP_WANT" >"$CHROOT/.sam3d-provisioned"
    say "updated in $((SECONDS - t0)) s"
    return 0
  fi
  ensure_debootstrap
  local mirror
  mirror="$(debian_mirror)" || mirror=""
  [ -n "$mirror" ] || unavailable "no Debian mirror in /etc/apt/sources.list* (set SAM3D_DEBIAN_MIRROR to one)"
  local work="$CACHE/.$SUITE.partial"
  say "provisioning Debian $SUITE + Blender into $CHROOT (once; ~1-2 min, ~1.4 GB) from $mirror"
  rm -rf "$work"
  if ! debootstrap --variant=minbase "$SUITE" "$work" "$mirror" >>"$CACHE/provision.log" 2>&1; then
    tail -n 20 "$CACHE/provision.log" >&2
    say "debootstrap failed; the log is $CACHE/provision.log"
    exit 1
  fi
  apt_install "$work"
  finish_chroot "$work"
  echo "$STAMP_WANT" >"$work/.sam3d-provisioned"
  rm -rf "$CHROOT"
  mv "$work" "$CHROOT"
  say "provisioned in $((SECONDS - t0)) s"
}

# Small fix-ups a minbase chroot lacks (idempotent; also applied to older caches).
finish_chroot() {
  # Blender lists mounted file systems (for its file browser) through /etc/mtab.
  [ -e "$1/etc/mtab" ] || ln -sf ../proc/self/mounts "$1/etc/mtab" 2>/dev/null || true
}

# -- running (inside our own mount namespace) ------------------------------------------------
bind_same_path() { # SRC: mount SRC at the same path inside the chroot
  local src="$1" dest="$CHROOT$1"
  [ -e "$src" ] || return 0
  if [ -d "$src" ]; then
    mkdir -p "$dest"
  else
    mkdir -p "$(dirname "$dest")"
    [ -e "$dest" ] || : >"$dest"
  fi
  mount --bind "$src" "$dest"
}

# The folder to bind so the venv's interpreter runs in the chroot: its installation prefix
# (pyenv/uv/python.org builds), or, for a distro Python under /usr, its stdlib + binary.
venv_interpreter_paths() {
  local py="$1"
  [ -x "$py" ] || return 0
  local base real
  base="$("$py" -c 'import sys; print(sys.base_prefix)')"
  real="$("$py" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
  if [ "$base" = "/usr" ] || [ "$base" = "/" ]; then
    "$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])'
    echo "$real"
  else
    echo "$base"
  fi
}

in_namespace() { # runs as PID 1's sibling inside "unshare --mount"; never returns
  mount -t proc proc "$CHROOT/proc"
  mount --rbind /sys "$CHROOT/sys"
  mount --rbind /dev "$CHROOT/dev"
  bind_same_path /tmp
  bind_same_path "$ROOT"
  local p
  while IFS= read -r p; do
    [ -n "$p" ] && bind_same_path "$p"
  done < <(venv_interpreter_paths "$ROOT/.venv/bin/python")
  if [ -n "${SAM3D_BLENDER_BIND:-}" ]; then
    local IFS=':'
    for p in $SAM3D_BLENDER_BIND; do
      [ -n "$p" ] && bind_same_path "$p"
    done
    unset IFS
  fi
  # A clean environment: the host's PATH/PYTHONPATH/VIRTUAL_ENV would confuse Blender's
  # own Python; keep Blender's, the add-on's and X's variables.
  local envs=(HOME=/root "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" LANG=C.UTF-8)
  local name
  while IFS= read -r name; do
    case "$name" in
      SAM3D_* | BLENDER_* | DISPLAY | XAUTHORITY | TERM | PYTHONUNBUFFERED | PYTHONFAULTHANDLER)
        envs+=("$name=${!name}")
        ;;
    esac
  done < <(compgen -e)
  local cwd="$PWD"
  [ -d "$CHROOT$cwd" ] || cwd="$ROOT"
  local mode="$1"
  shift
  case "$mode" in
    blender) set -- blender "$@" ;;
    xvfb) set -- xvfb-run -a -s "-screen 0 $XVFB_SCREEN -nolisten tcp" blender "$@" ;;
    exec) ;;
  esac
  exec chroot "$CHROOT" /usr/bin/env -i "${envs[@]}" sh -c 'cd "$1" && shift && exec "$@"' sh "$cwd" "$@"
}

# -- main ------------------------------------------------------------------------------------
if [ "${_SAM3D_BLENDER_NS:-}" = "1" ]; then
  unset _SAM3D_BLENDER_NS
  in_namespace "$@"
fi

check_host
mode="blender"
case "${1:-}" in
  --provision) mode="provision" ;;
  --xvfb) mode="xvfb"; shift ;;
  --exec) mode="exec"; shift ;;
esac

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if ! provisioned; then
  flock -x 9
  provisioned || provision
fi
finish_chroot "$CHROOT"
flock -s 9 # held (shared) while Blender runs: re-provisioning waits for running Blenders

if [ "$mode" = "provision" ]; then
  version="$(chroot "$CHROOT" /usr/bin/env -i PATH=/usr/bin:/bin blender --version 2>/dev/null | head -n 1)"
  echo "blender.sh: ready: ${version:-Blender (version unknown)} in $CHROOT"
  exit 0
fi

if [ ! -x "$ROOT/.venv/bin/python" ]; then
  source "$ROOT/scripts/_bootstrap.sh" # creates the checkout's .venv
fi
export SAM3D_BACKEND_PYTHON="${SAM3D_BACKEND_PYTHON:-$ROOT/.venv/bin/python}"
export _SAM3D_BLENDER_NS=1
exec unshare --mount --propagation private -- "$ROOT/scripts/blender.sh" "$mode" "$@"
