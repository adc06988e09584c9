#!/usr/bin/env bash
# The main job, end to end: make the example photo + mask, run the backend's `generate`
# (preview engine on machines without the SAM 3D weights), print where the GLB is.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/_bootstrap.sh"
cd "$ROOT"
OUT="$ROOT/out/demo"
mkdir -p "$OUT"
python scripts/make_example.py --out "$OUT"
python -m backend doctor
GLB="$(python -m backend generate --image "$OUT/example_image.png" --mask "$OUT/example_mask.png" \
        --engine auto --target-faces 20000 --texture-size 1024 \
        --out "$OUT/example.glb" --report "$OUT/example.json")"
echo
echo "Textured GLB written to: $GLB"
echo "Details (pose, stats, timings): $OUT/example.json"
