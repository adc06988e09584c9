"""Running a job folder in-process (what a worker does), progress reporting included."""

from __future__ import annotations

import numpy as np

from backend.jobs.images import encode_png
from backend.jobs.job_dir import JobDir, JobInputs
from backend.jobs.request import JobRequest
from backend.jobs.run import run_job
from backend.options import JobOptions
from backend.progress import JobContext


def test_scene_progress_rises_steadily_across_parts(tmp_path):
    img = np.full((300, 400, 3), 100, np.uint8)
    masks = []
    for x in (50, 200, 300):
        m = np.zeros((300, 400), bool)
        m[150:280, x : x + 60] = True
        masks.append(encode_png(m))
    job = JobDir(tmp_path)
    request = JobRequest(
        kind="scene",
        engine="preview",
        parts=3,
        options=JobOptions(engine="preview", target_faces=1000, texture_size=256),
    )
    job.write_inputs(JobInputs(request, encode_png(img), masks))
    seen: list[tuple[str, float]] = []
    result = run_job(job, JobContext(on_update=lambda s, f: seen.append((s, f))))
    assert [p["state"] for p in result["parts"]] == ["done"] * 3
    fractions = [f for _, f in seen]
    assert all(b >= a - 1e-9 for a, b in zip(fractions, fractions[1:], strict=False))
    # the last part's finishing is not reported as complete before it starts
    first_part_end = max(f for s, f in seen if s.endswith("(1/3)"))
    assert first_part_end < 0.85
    assert any(s.startswith("bake (3/3)") for s, _ in seen)
    assert fractions[-1] <= 1.0
