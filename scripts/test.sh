#!/usr/bin/env bash
# Bootstrap .venv/ and run the whole pytest suite (extra arguments go to pytest).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/_bootstrap.sh"
cd "$ROOT"
# The Khronos glTF validator (npm) that the GLB tests run; installed once into tests/.node/.
VALIDATOR="gltf-validator@2.0.0-dev.3.10"
if command -v npm >/dev/null 2>&1 && [ ! -d tests/.node/node_modules/gltf-validator ]; then
  echo "installing the Khronos glTF validator ($VALIDATOR) into tests/.node" >&2
  npm install --silent --no-audit --no-fund --prefix tests/.node "$VALIDATOR" >&2
fi
# The real-Blender tier (tests/blender) runs Debian 13's Blender from a chroot that
# scripts/blender.sh provisions once, cached outside the checkout (fresh machine: 1-2 min,
# ~1.4 GB on disk). Where it cannot run (not root, no chroot, ...) it says why, and the
# tier is skipped with that reason in pytest's summary.
set +e
scripts/blender.sh --provision >&2
blender_rc=$?
if [ "$blender_rc" -eq 77 ]; then
  echo "note: tests/blender will be skipped (reason above)" >&2
elif [ "$blender_rc" -ne 0 ]; then
  echo "warning: provisioning the real Blender failed (exit $blender_rc); tests/blender will fail" >&2
fi
python -m pytest -ra "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests - the suite must never pass silently" >&2
  exit 1
fi
exit "$rc"
