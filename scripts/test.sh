#!/usr/bin/env bash
# Bootstrap .venv/ and run the whole pytest suite (extra arguments go to pytest).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/_bootstrap.sh"
cd "$ROOT"
set +e
python -m pytest -ra "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests - the suite must never pass silently" >&2
  exit 1
fi
exit "$rc"
