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
set +e
python -m pytest -ra "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests - the suite must never pass silently" >&2
  exit 1
fi
exit "$rc"
