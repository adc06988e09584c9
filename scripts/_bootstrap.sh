# Sourced by demo.sh and test.sh: make sure .venv/ exists with the project installed.
# Idempotent: re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

find_python311() {
  for cand in python3.11 python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && \
       "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      command -v "$cand"; return 0
    fi
  done
  if command -v uv >/dev/null 2>&1 && uv python find 3.11 >/dev/null 2>&1; then
    uv python find 3.11; return 0
  fi
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  if ! PY="$(find_python311)"; then
    echo "error: Python 3.11 was not found (needed by Blender 4.5's bpy module used in tests)." >&2
    echo "       Install it, e.g. on Debian/Ubuntu: sudo apt-get install python3.11 python3.11-venv" >&2
    echo "       or with uv: uv python install 3.11" >&2
    exit 1
  fi
  echo "creating $VENV with $PY" >&2
  if ! "$PY" -m venv "$VENV"; then
    echo "error: could not create a virtual environment; install the venv module" >&2
    echo "       (Debian/Ubuntu: sudo apt-get install python3.11-venv)" >&2
    exit 1
  fi
fi

STAMP="$VENV/.sam3d-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "installing the project and its dependencies into $VENV (first run: a few minutes)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev,bench]" >&2
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
