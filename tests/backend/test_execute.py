"""Running a job directory in-process (what a worker does), progress reporting included."""

from __future__ import annotations

import numpy as np

from backend.execute import run_job_dir
from backend.imageio import encode_png
from backend.jobs import write_json_atomic
from backend.progress import JobContext


def test_scene_progress_rises_steadily_across_parts(tmp_path):
    img = np.full((300, 400, 3), 100, np.uint8)
    (tmp_path / "image.png").write_bytes(encode_png(img))
    (tmp_path / "masks").mkdir()
    for i, x in enumerate((50, 200, 300)):
        m = np.zeros((300, 400), bool)
        m[150:280, x : x + 60] = True
        (tmp_path / "masks" / f"{i}.png").write_bytes(encode_png(m))
    write_json_atomic(
        tmp_path / "request.json",
        {
            "kind": "scene",
            "engine": "preview",
            "seed": 0,
            "parts": 3,
            "options": {"target_faces": 1000, "texture_size": 256},
        },
    )
    seen: list[tuple[str, float]] = []
    result = run_job_dir(tmp_path, JobContext(on_update=lambda s, f: seen.append((s, f))))
    assert [p["state"] for p in result["parts"]] == ["done"] * 3
    fractions = [f for _, f in seen]
    assert all(b >= a - 1e-9 for a, b in zip(fractions, fractions[1:], strict=False))
    # the last part's finishing is not reported as complete before it starts
    first_part_end = max(f for s, f in seen if s.endswith("(1/3)"))
    assert first_part_end < 0.85
    assert any(s.startswith("bake (3/3)") for s, _ in seen)
    assert fractions[-1] <= 1.0
