"""Add-on benchmarks: Generate -> object in scene (preview engine, real backend subprocess),
import time of a 20k-face 1024^2 textured GLB, and the extension zip's size.

Runs with the bpy module (``.venv/bin/python bench/bench_addon.py``) or inside Blender
(``blender -b --python bench/bench_addon.py``). Prints a table; not a test.
Options: ``--runs N`` (default 3), ``--engine preview``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="sam3d-bench-"))


def _args() -> argparse.Namespace:
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--engine", default="preview")
    return p.parse_args(argv)


def main() -> int:
    args = _args()
    import bpy

    from tests.addon import helpers  # enabling like Blender does; synthetic photo/GLB makers

    helpers.enable_addon()
    work = Path(tempfile.mkdtemp(prefix="sam3d-bench-"))
    helpers.preferences().cache_dir = str(work / "cache")
    photo, mask, _ = helpers.make_photo(work / "in", 640, 480)
    session = helpers.addon("session")
    import_object = helpers.addon("importing.object").import_object
    textured_image = helpers.addon("importing.gltf").textured_image
    rows: list[tuple[str, str, str]] = []

    def generate(seed: int) -> float:
        bpy.ops.wm.read_homefile(use_empty=True)
        t0 = time.perf_counter()
        result = bpy.ops.sam3d.generate(
            image_path=str(photo),
            mask_path=str(mask),
            engine=args.engine,
            seed=seed,
            target_faces=20000,
            texture_size=1024,
            bake=True,
        )
        seconds = time.perf_counter() - t0
        assert result == {"FINISHED"}, result
        assert any(o.type == "MESH" for o in bpy.data.collections["SAM 3D"].objects)
        return seconds

    # Generate -> object (operator call until the object is in the scene)
    cold = generate(seed=100)
    warm = [generate(seed=101 + i) for i in range(args.runs)]
    cached = generate(seed=101)
    rows.append(
        (
            f"Generate -> object, {args.engine}, 640x480, 20k faces, 1024 px, cold backend",
            f"{cold:.2f} s",
            "includes starting the backend",
        )
    )
    rows.append(
        (
            f"Generate -> object, {args.engine}, warm backend (median of {len(warm)})",
            f"{statistics.median(warm):.2f} s",
            f"min {min(warm):.2f} / max {max(warm):.2f}",
        )
    )
    rows.append(("Generate -> object, same request again (backend cache)", f"{cached:.2f} s", ""))
    job = session.get().manager.jobs[-2]
    timings = (job.result.get("stats") or {}).get("stage_seconds") or {}
    if timings:
        rows.append(
            (
                "  backend finishing stages (last warm run)",
                ", ".join(f"{k} {v:.2f}" for k, v in timings.items() if v is not None),
                "s",
            )
        )
    session.get().shutdown()

    # Import of a 20k-face, 1024^2 textured GLB
    glb = helpers.make_textured_glb(work / "sphere20k.glb", subdivisions=5, texture=1024)
    imports, with_pixels = [], []
    for i in range(max(3, args.runs)):
        bpy.ops.wm.read_homefile(use_empty=True)
        t0 = time.perf_counter()
        obj = import_object(bpy.context, glb, label=f"s{i}")
        imports.append(time.perf_counter() - t0)
        image = textured_image(obj)
        t1 = time.perf_counter()
        image.pixels[0]  # decode the packed PNG (Blender does this lazily, at first draw)
        with_pixels.append(imports[-1] + time.perf_counter() - t1)
        assert len(obj.data.polygons) == 20480
    rows.append(
        (
            f"Import 20,480-face GLB + 1024^2 texture (median of {len(imports)})",
            f"{statistics.median(imports) * 1000:.0f} ms",
            "glTF importer + naming, collection, placement, provenance, Decimate",
        )
    )
    rows.append(
        (
            "  ... plus decoding the texture",
            f"{statistics.median(with_pixels) * 1000:.0f} ms",
            f"GLB file {glb.stat().st_size / 1024:.0f} KiB",
        )
    )

    # Extension zip
    cli = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core/bl_pkg/cli/blender_ext.py"
    out = work / "dist"
    out.mkdir()
    subprocess.run(
        [sys.executable, str(cli), "build", "--source-dir", str(REPO), "--output-dir", str(out)],
        check=True,
        capture_output=True,
    )
    z = next(out.glob("*.zip"))
    rows.append(
        ("Extension zip (add-on + bundled backend)", f"{z.stat().st_size / 1024:.0f} KiB", z.name)
    )

    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'measure'.ljust(width)} | {'value':>10} | note")
    print(f"{'-' * width}-+-{'-' * 10}-+-----")
    for name, value, note in rows:
        print(f"{name.ljust(width)} | {value:>10} | {note}")
    print(
        f"\nmachine: {os.cpu_count()} CPU cores, Blender {bpy.app.version_string}, "
        f"Python {sys.version.split()[0]}"
    )
    helpers.disable_addon()
    return 0


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    os._exit(rc)  # bpy 4.5 as a module can hang at interpreter exit
